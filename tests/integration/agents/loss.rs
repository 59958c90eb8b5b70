//! Agents that go away mid-task: SIGKILL (an idempotent task runs again on the other agent, a
//! task that is not fails with the agent lost, a redeploy works) and SIGSTOP past the lease (the
//! job moves on; the paused agent's late report gets 409; the stored outcome is the other's).

use serde_json::json;

use super::{Site, agent_token, logged, pipeline};

/// A short lease: lost after 3 x 500 ms without a renewal.
const FAST: &str = "renew = \"500ms\"";

fn runs(site: &Site) -> Vec<String> {
    std::fs::read_to_string(site.out.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn attempt(site: &Site, release: &str, n: usize) -> serde_json::Value {
    site.api.get("vic", &format!("/api/v1/releases/{release}"))["stages"][0]["attempts"][n].clone()
}

/// Waits until the task has started (its line written: it logs so, live), and names the agent
/// it runs on.
fn started_on(site: &Site, release: &str) -> String {
    logged(&site.api, release, 1, &format!("appended {release}"));
    assert_eq!(runs(site), [release], "its line, written before it said so");
    attempt(site, release, 0)["lease"]["agent"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn an_idempotent_task_of_a_killed_agent_runs_again_on_the_other() {
    let site = Site::start(&[("deploy", pipeline(true, 1_500))], FAST);
    let out = site.out.display().to_string();
    let mut a1 = site.agent("a1", &["--allow-dir", &out]);
    let mut a2 = site.agent("a2", &["--allow-dir", &out]);
    let release = site.release("deploy");
    let first = started_on(&site, &release);
    let (victim, other) = if first == "a1" {
        (&mut a1, "a2")
    } else {
        (&mut a2, "a1")
    };
    victim.child.kill().unwrap(); // SIGKILL
    site.api.wait_stage(&release, "prod", "succeeded");
    let attempt = attempt(&site, &release, 0);
    let task = &attempt["tasks"][0];
    assert_eq!(
        (task["state"].as_str(), task["agent"].as_str()),
        (Some("succeeded"), Some(other))
    );
    assert_eq!(task["starts"], 2, "{attempt:#}");
    assert_eq!(attempt["lease"]["epoch"], 2);
    assert_eq!(
        runs(&site),
        [release.clone(), release.clone()],
        "ran on both"
    );
    let trail = site
        .api
        .get("vic", &format!("/api/v1/audit?release={release}"))
        .to_string();
    assert_eq!(
        trail.matches("task ship succeeded").count(),
        1,
        "one recorded success: {trail}"
    );
    assert!(trail.contains(&format!("agent {first} lost")), "{trail}");
}

#[test]
fn a_task_that_is_not_idempotent_fails_with_its_agent_and_a_redeploy_works() {
    let site = Site::start(&[("deploy", pipeline(false, 1_500))], FAST);
    let out = site.out.display().to_string();
    let mut a1 = site.agent("a1", &["--allow-dir", &out]);
    let mut a2 = site.agent("a2", &["--allow-dir", &out]);
    let release = site.release("deploy");
    let first = started_on(&site, &release);
    let victim = if first == "a1" { &mut a1 } else { &mut a2 };
    victim.child.kill().unwrap();
    site.api.wait_stage(&release, "prod", "failed");
    let failed = attempt(&site, &release, 0);
    assert_eq!(
        failed["reason"],
        format!("agent {first} lost — redeploy to retry")
    );
    assert_eq!(runs(&site).len(), 1, "never started twice");
    let reply = site.api.call(
        "rita",
        "POST",
        &format!("/api/v1/releases/{release}/stages/prod/deploy"),
        Some(json!({})),
    );
    assert!(reply.status < 300, "{}", reply.text());
    site.api.wait_stage(&release, "prod", "succeeded");
    assert_eq!(
        attempt(&site, &release, 1)["tasks"][0]["state"],
        "succeeded"
    );
}

#[test]
fn a_paused_agent_that_comes_back_is_fenced_off_by_the_epoch() {
    let site = Site::start(&[("deploy", pipeline(true, 1_500))], FAST);
    let out = site.out.display().to_string();
    let a1 = site.agent("a1", &["--allow-dir", &out]);
    let a2 = site.agent("a2", &["--allow-dir", &out]);
    let release = site.release("deploy");
    let first = started_on(&site, &release);
    let (paused, other) = if first == "a1" {
        (&a1, "a2")
    } else {
        (&a2, "a1")
    };
    let pid = paused.child.id().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    site.api.wait_stage(&release, "prod", "succeeded");
    signal("-CONT");
    // Its late report, with the lease of epoch 1, is refused: the job is the other's now.
    let agent = sluice::api::client::Client::new(&site.api.base, Some(agent_token())).unwrap();
    let late = json!({
        "agent": first, "epoch": 1,
        "outcome": {"Ok": {"warnings": [], "outputs": []}}, "lines": 0
    });
    let id = format!("{release}.prod.1");
    let reply = site
        .api
        .runtime
        .block_on(agent.send(
            "POST",
            &format!("/api/v1/agent/jobs/{id}/tasks/0"),
            Some(late.to_string().into_bytes()),
            &[],
        ))
        .unwrap();
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(
        reply.text().contains("not leased to agent"),
        "{}",
        reply.text()
    );
    // The paused agent, continued, drops the job on its own.
    crate::support::process::wait_line(&paused.lines, "job dropped");
    let attempt = attempt(&site, &release, 0);
    assert_eq!(attempt["tasks"][0]["agent"], other, "{attempt:#}");
    assert_eq!(attempt["lease"]["agent"], other);
    assert_eq!(attempt["lease"]["epoch"], 2);
}

#[test]
fn an_agent_told_to_stop_finishes_its_running_job_and_exits() {
    let site = Site::start(&[("deploy", pipeline(false, 1_500))], FAST);
    let out = site.out.display().to_string();
    let mut a1 = site.agent("a1", &["--allow-dir", &out]);
    let release = site.release("deploy");
    started_on(&site, &release);
    let pid = a1.child.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    crate::support::process::wait_line(&a1.lines, "stopping: no new job");
    site.api.wait_stage(&release, "prod", "succeeded");
    let status = a1.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(runs(&site).len(), 1, "ran once, to its end");
}
