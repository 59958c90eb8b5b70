//! The server SIGKILLed while two agents run jobs: started again, it gives each job back to
//! its lease holder; the agents come back (retrying), report, and the jobs finish, each step
//! once in the audit trail.

use super::{Site, heard, logged, pipeline};
use crate::support::token;

#[test]
fn jobs_survive_a_server_restart_and_each_step_is_recorded_once() {
    // Leases of 3 x 2 s: room for the server to start again and the agents to come back.
    let mut site = Site::start(&[("deploy", pipeline(false, 2_000))], "renew = \"2s\"");
    let out = site.out.display().to_string();
    let _a1 = site.agent("a1", &["--allow-dir", &out]);
    let _a2 = site.agent("a2", &["--allow-dir", &out]);
    let releases = [site.release("deploy"), site.release("deploy")];
    for release in &releases {
        logged(&site.api, release, 1, &format!("appended {release}"));
    }
    let file = site.out.join("runs");
    let runs = || std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(runs().lines().count(), 2, "both tasks started");
    site.restart(); // SIGKILL, both tasks running on their agents
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

#[test]
fn a_disabled_agent_takes_no_job_and_stays_disabled_across_a_restart() {
    let admin = format!(
        "renew = \"2s\"\n[[users]]\nname = \"ada\"\ntoken-sha256 = \"{}\"\nroles = [\"admin\"]\n",
        sluice::service::hash_token(&token("ada"))
    );
    let mut site = Site::start(&[("deploy", pipeline(false, 0))], &admin);
    let out = site.out.display().to_string();
    let _a1 = site.agent("a1", &["--allow-dir", &out]);
    let a1 = |site: &Site| site.api.get("vic", "/api/v1/agents")[0].clone();
    heard(&site.lines, &["agent a1 online"]);
    assert_eq!(a1(&site)["online"], true);
    let stage = |site: &Site, release: &str| {
        site.api.get("vic", &format!("/api/v1/releases/{release}"))["stages"][0].clone()
    };
    let switch = |site: &Site, what: &str| {
        let reply = site
            .api
            .call("ada", "POST", &format!("/api/v1/agents/a1/{what}"), None);
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    };
    // A name no agent has is refused.
    let unknown = site
        .api
        .call("ada", "POST", "/api/v1/agents/nobody/disable", None);
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(switch(&site, "disable")["disabled"], true);
    let release = site.release("deploy");
    let waits = "no free online agent in pool eu-prod; online: a1 (disabled)";
    heard(&site.lines, &[&format!("job {release}.prod.1 queued")]);
    assert_eq!(stage(&site, &release)["waiting"], waits);
    site.restart();
    // Agent routes answer only once the restart recovered the job: a1 joins after that.
    heard(&site.lines, &["agent a1 online"]);
    let agent = a1(&site);
    assert_eq!(
        (&agent["online"], &agent["disabled"]),
        (&true.into(), &true.into())
    );
    assert_eq!(
        stage(&site, &release)["waiting"],
        waits,
        "the job still waits"
    );
    assert!(!site.out.join("runs").exists(), "it ran nowhere");
    assert_eq!(switch(&site, "enable")["disabled"], false);
    site.api.wait_stage(&release, "prod", "succeeded");
    assert_eq!(
        stage(&site, &release)["attempts"][0]["lease"]["agent"],
        "a1"
    );
}
