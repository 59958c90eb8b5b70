//! A stage's job goes to an agent of its pool that meets its demands: while none does, the
//! release says why; one coming online takes it. An agent grants only what it offers; agent
//! and user tokens stay on their own routes.

use serde_json::json;

use super::{Site, agent_token, heard};
use crate::support::process::wait_line;

const DEPLOY: &str = r#"
version = 1
name = "deploy"
[[stages]]
name = "prod"
pool = "eu-prod"
demands = ["region=eu"]
[[stages.tasks]]
name = "ship"
plugin = "./kit.wasm"
config = { action = "append", path = "/out/runs", line = "$(sluice.release)" }
grants.dirs = [{ host = "OUT", guest = "/out", access = "rw" }]
"#;

fn stage(site: &Site, release: &str) -> serde_json::Value {
    site.api.get("vic", &format!("/api/v1/releases/{release}"))["stages"][0].clone()
}

#[test]
fn a_job_waits_for_an_agent_that_meets_its_demands_and_runs_there() {
    let escape = DEPLOY
        .replace("name = \"deploy\"", "name = \"escape\"")
        .replace("host = \"OUT\"", "host = \"OUT/../elsewhere\"");
    let site = Site::start(&[("deploy", DEPLOY.into()), ("escape", escape)], "");
    let out = site.out.display().to_string();
    let _us = site.agent("a1", &["--capability", "region=us", "--allow-dir", &out]);
    heard(&site.lines, &["agent a1 online"]);
    let agents = site.api.get("vic", "/api/v1/agents");
    assert_eq!(
        (&agents[0]["name"], &agents[0]["online"]),
        (&json!("a1"), &json!(true))
    );
    let release = site.release("deploy");
    heard(&site.lines, &[&format!("job {release}.prod.1 queued")]);
    assert_eq!(
        stage(&site, &release)["waiting"],
        "no free online agent in pool eu-prod meets region=eu; online: a1 (region=us)"
    );
    let metrics = || site.api.call("vic", "GET", "/metrics", None).text();
    let scraped = metrics();
    for line in [
        "sluice_agents_online{pool=\"eu-prod\"} 1",
        "sluice_jobs_queued{pool=\"eu-prod\"} 1",
        "sluice_dispatch_latency_seconds_count 0",
    ] {
        assert!(scraped.contains(line), "{line} in {scraped}");
    }
    let eu = site.agent("a2", &["--capability", "region=eu", "--allow-dir", &out]);
    site.api.wait_stage(&release, "prod", "succeeded");
    let prod = stage(&site, &release);
    let attempt = &prod["attempts"][0];
    assert_eq!(attempt["lease"]["agent"], "a2", "{prod:#}");
    assert_eq!(attempt["lease"]["epoch"], 1);
    assert_eq!(attempt["tasks"][0]["agent"], "a2");
    assert_eq!(attempt["tasks"][0]["outputs"][0]["value"], release.as_str());
    assert!(prod.get("waiting").is_none(), "{prod:#}");
    let scraped = metrics();
    for line in [
        "sluice_agents_online{pool=\"eu-prod\"} 2",
        "sluice_jobs_queued{pool=\"eu-prod\"} 0",
        "sluice_dispatch_latency_seconds_count 1",
    ] {
        assert!(scraped.contains(line), "{line} in {scraped}");
    }
    let runs = std::fs::read_to_string(site.out.join("runs")).unwrap();
    assert_eq!(runs, format!("{release}\n"), "ran once, on a2");
    // Its log came from the agent and is stored as a local task's.
    let log = site.api.call(
        "vic",
        "GET",
        &format!("/api/v1/releases/{release}/stages/prod/attempts/1/tasks/ship/log"),
        None,
    );
    assert!(
        log.text().contains(&format!("appended {release}")),
        "{}",
        log.text()
    );
    let audit = site
        .api
        .get("vic", &format!("/api/v1/audit?release={release}"));
    let trail = audit.to_string();
    assert!(
        trail.contains("prod: attempt 1 assigned to agent a2 (lease epoch 1)"),
        "{trail}"
    );
    assert!(
        trail.contains("agent:a2"),
        "the task's end is the agent's: {trail}"
    );

    // A cached component tampered with on the agent's disk while it is down is refused when
    // it starts again (discarded, fetched again by digest): the next job runs the genuine one.
    let mut eu = eu;
    eu.child.kill().unwrap();
    eu.child.wait().unwrap();
    let cache = eu.work.join("plugins/sha256");
    let cached: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(cached.len(), 1, "the kit, cached once");
    let genuine = std::fs::read(cached[0].path()).unwrap();
    std::fs::write(cached[0].path(), b"\0asm tampered").unwrap();
    let eu = site.agent("a2", &["--capability", "region=eu", "--allow-dir", &out]);
    let again = site.release("deploy");
    site.api.wait_stage(&again, "prod", "succeeded");
    wait_line(
        &eu.lines,
        "does not match its digest: discarded, fetched again",
    );
    assert_eq!(std::fs::read(cached[0].path()).unwrap(), genuine);

    // A grant outside what the agent offers fails the task, naming the flag; nothing written.
    let refused = site.release("escape");
    site.api.wait_stage(&refused, "prod", "failed");
    let attempt = &stage(&site, &refused)["attempts"][0];
    let why = attempt["tasks"][0]["messages"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("outside this agent's --allow-dir"),
        "{attempt:#}"
    );
    assert!(!site.dir.path().join("elsewhere").exists());
}

#[test]
fn agent_tokens_reach_only_agent_routes_and_user_tokens_never_do() {
    let site = Site::start(&[("deploy", DEPLOY.into())], "");
    let agent = sluice::api::client::Client::new(&site.api.base, Some(agent_token())).unwrap();
    let as_agent = |method: &str, path: &str| {
        let body = (method == "POST").then(|| b"{}".to_vec());
        site.api
            .runtime
            .block_on(agent.send(method, path, body, &[]))
            .unwrap()
    };
    for (method, path) in [
        ("GET", "/api/v1/releases"),
        ("GET", "/api/v1/agents"),
        ("POST", "/api/v1/pipelines/deploy/releases"),
        ("POST", "/api/v1/agents/a1/disable"),
    ] {
        let reply = as_agent(method, path);
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.text());
        assert!(
            reply
                .text()
                .contains("agent token reaches only the agent routes")
        );
    }
    let hello = json!({"agent": "a1", "pool": "eu-prod", "capabilities": {}, "max-jobs": 1});
    for who in ["rita", "vic"] {
        let reply = site
            .api
            .call(who, "POST", "/api/v1/agent/jobs/next", Some(hello.clone()));
        assert_eq!(reply.status, 403, "{who}: {}", reply.text());
        assert!(
            reply
                .text()
                .contains("user tokens do not reach the agent routes")
        );
    }
    // An agent token may join only its pools, and may not fetch what no job of it runs.
    let other = json!({"agent": "a1", "pool": "us", "capabilities": {}, "max-jobs": 1});
    let body = other.to_string().into_bytes();
    let reply = site
        .api
        .runtime
        .block_on(agent.send("POST", "/api/v1/agent/jobs/next", Some(body), &[]))
        .unwrap();
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("may not join pool `us`"));
    let digest = format!("sha256:{}", "0".repeat(64));
    let reply = as_agent("GET", &format!("/api/v1/agent/plugins/{digest}?agent=a1"));
    assert_eq!(reply.status, 403, "{}", reply.text());
    // A pipeline naming a pool the service does not declare is refused when stored.
    let unknown = DEPLOY
        .replace("pool = \"eu-prod\"", "pool = \"mars\"")
        .replace("OUT", &site.out.display().to_string());
    let rita = site.api.client("rita");
    let reply = site
        .api
        .runtime
        .block_on(rita.send(
            "POST",
            "/api/v1/pipelines/deploy/validate",
            Some(unknown.into_bytes()),
            &[("content-type", "application/toml")],
        ))
        .unwrap();
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("runs on pool `mars`, which the service does not know"),
        "{}",
        reply.text()
    );
}
