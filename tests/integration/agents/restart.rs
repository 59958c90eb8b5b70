//! The server SIGKILLed while two agents run jobs: started again, it gives each job back to
//! its lease holder; the agents come back (retrying), report, and the jobs finish, each step
//! once in the audit trail.

use super::{Site, pipeline, serve_env, until};

#[test]
fn jobs_survive_a_server_restart_and_each_step_is_recorded_once() {
    // Leases of 3 x 2 s: room for the server to start again and the agents to come back.
    let mut site = Site::start(&[("deploy", pipeline(false, 2_000))], "renew = \"2s\"");
    let out = site.out.display().to_string();
    let _a1 = site.agent("a1", &["--allow-dir", &out]);
    let _a2 = site.agent("a2", &["--allow-dir", &out]);
    let releases = [site.release("deploy"), site.release("deploy")];
    let runs = || std::fs::read_to_string(site.out.join("runs")).unwrap_or_default();
    until("both tasks started", || runs().lines().count() == 2);
    site.server.kill().unwrap(); // SIGKILL, both tasks running on their agents
    site.server.wait().unwrap();
    // Started again where the agents look for it.
    let config = site.dir.path().join("sluice.toml");
    let port = site.api.base.rsplit(':').next().unwrap().to_owned();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("127.0.0.1:0"), "{text}");
    std::fs::write(
        &config,
        text.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let (server, base, lines) = serve_env(site.dir.path());
    (site.server, site.api.base, site.lines) = (server, base, lines);
    site.api.until_ready(&site.lines);
    for release in &releases {
        site.api.wait_stage(release, "prod", "succeeded");
        let trail = site
            .api
            .get("vic", &format!("/api/v1/audit?release={release}"))
            .to_string();
        for step in ["assigned to agent", "task ship succeeded"] {
            assert_eq!(trail.matches(step).count(), 1, "{step} once: {trail}");
        }
        let attempt = &site.api.get("vic", &format!("/api/v1/releases/{release}"))["stages"][0]["attempts"]
            [0];
        assert_eq!(attempt["tasks"][0]["starts"], 1, "{attempt:#}");
        assert_eq!(attempt["lease"]["epoch"], 1, "the same lease went on");
    }
    let mut lines: Vec<String> = runs().lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, releases.to_vec(), "each task ran once");
}
