//! Queueing policies, on the seed's R1..R5 scenario: five releases created in quick succession,
//! a QA stage with pre- and post-deployment approvers. Each test asserts, step by step, which
//! approvals are requested (and which are not yet), and the order of the deployments; on a
//! local engine, and on a `sluice serve` process SIGKILLed and restarted mid-way.

use serde_json::{Value, json};
use sluice::core::{ReleaseState, StageState};

use sluice::api::client::Client;

use crate::support::process::{serve, service_dir, wait_line};
use crate::support::{Api, Approvals, Harness, Process, token};

const PIPELINE: &str = r#"
version = 1
name = "web"

[[stages]]
name = "qa"
queue = QUEUE
pre-approval = { approvers = ["alice"] }
post-approval = { approvers = ["alice"] }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

impl Harness {
    fn start(queue: &str) -> Self {
        Harness::serve(&PIPELINE.replace("QUEUE", queue))
    }

    /// Creates R1..R5 back to back; returns their names.
    fn five(&self) -> Vec<String> {
        (0..5).map(|_| self.create()).collect()
    }

    fn qa(&self, release: &str) -> StageState {
        self.service.release(release).unwrap().stages[0].state()
    }

    /// Releases in the order their QA deployment ran (from the audit trail).
    fn deployed(&self) -> Vec<String> {
        self.service
            .store()
            .audit()
            .unwrap()
            .into_iter()
            .filter(|e| e.what.contains("qa: task") && e.what.contains("succeeded"))
            .map(|e| e.release)
            .collect()
    }
}

fn pre(release: &str) -> String {
    format!("{release}.qa.1.pre")
}

fn post(release: &str) -> String {
    format!("{release}.qa.1.post")
}

#[test]
fn parallel_requests_all_five_approvals_at_once_and_deploys_them_together() {
    let h = Harness::start(r#"{ policy = "parallel" }"#);
    let r = h.five();
    let pres: Vec<String> = r.iter().map(|r| pre(r)).collect();
    h.wait_pending(&pres);
    for id in &pres {
        h.approve(id);
    }
    let posts: Vec<String> = r.iter().map(|r| post(r)).collect();
    h.wait_pending(&posts);
    for id in &posts {
        h.approve(id);
    }
    h.wait("all five succeeded", |h| {
        r.iter().all(|r| h.qa(r) == StageState::Succeeded)
    });
}

#[test]
fn at_most_n_in_parallel_admits_the_oldest_as_slots_free() {
    let h = Harness::start(r#"{ policy = "parallel", max-parallel = 2 }"#);
    let r = h.five();
    h.wait_pending(&[pre(&r[0]), pre(&r[1])]);
    assert!(r[2..].iter().all(|r| h.qa(r) == StageState::Queued));
    h.approve(&pre(&r[0]));
    h.wait_pending(&[post(&r[0]), pre(&r[1])]);
    h.approve(&post(&r[0]));
    // R1's slot is free: R3 (the oldest waiting) is asked next, R4 and R5 still wait.
    h.wait_pending(&[pre(&r[1]), pre(&r[2])]);
    assert_eq!(h.qa(&r[3]), StageState::Queued);
}

#[test]
fn sequential_asks_for_the_next_pre_approval_only_after_the_previous_post_approval() {
    let h = Harness::start(r#"{ policy = "sequential" }"#);
    let r = h.five();
    for (i, release) in r.iter().enumerate() {
        h.wait_pending(std::slice::from_ref(&pre(release)));
        assert!(
            r[i + 1..]
                .iter()
                .all(|later| h.qa(later) == StageState::Queued),
            "the releases after {release} wait their turn"
        );
        h.approve(&pre(release));
        h.wait_pending(std::slice::from_ref(&post(release)));
        h.approve(&post(release));
    }
    h.wait("R5 succeeded", |h| h.qa(&r[4]) == StageState::Succeeded);
    assert_eq!(h.deployed(), r, "deployed in turn, R1 to R5");
}

#[test]
fn latest_only_skips_r2_to_r4_and_asks_for_r5_after_r1() {
    let h = Harness::start(r#"{ policy = "latest-only" }"#);
    let r = h.five();
    h.wait_pending(std::slice::from_ref(&pre(&r[0])));
    h.approve(&pre(&r[0]));
    h.wait_pending(std::slice::from_ref(&post(&r[0])));
    h.approve(&post(&r[0]));
    // R1 is through: R5's pre-approval comes next; R2, R3 and R4 are skipped, never asked.
    h.wait_pending(std::slice::from_ref(&pre(&r[4])));
    // Skipped in the same decision that gave R5 its turn (each in its own commit).
    h.wait("R2..R4 skipped", |h| {
        r[1..4].iter().all(|s| h.qa(s) == StageState::Skipped)
    });
    for skipped in &r[1..4] {
        let release = h.service.release(skipped).unwrap();
        assert_eq!(release.stages[0].state(), StageState::Skipped);
        assert_eq!(release.state, ReleaseState::Abandoned);
        assert!(release.stages[0].attempts[0].approvals.is_empty());
        let reason = release.stages[0].attempts[0].reason.clone().unwrap();
        assert!(reason.contains(&r[4]), "{reason}");
    }
    h.approve(&pre(&r[4]));
    h.wait_pending(std::slice::from_ref(&post(&r[4])));
    h.approve(&post(&r[4]));
    h.wait("R5 succeeded", |h| h.qa(&r[4]) == StageState::Succeeded);
    assert_eq!(h.deployed(), [r[0].clone(), r[4].clone()]);
}

impl Api {
    fn release(&self, name: &str) -> Value {
        self.call("vic", "GET", &format!("/api/v1/releases/{name}"), None)
            .json()
    }

    /// Releases in the order their QA deployment ran.
    fn deployed(&self) -> Vec<String> {
        let audit = self
            .call("vic", "GET", "/api/v1/audit?limit=10000", None)
            .json();
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                let what = e["what"].as_str().unwrap();
                what.contains("qa: task") && what.contains("succeeded")
            })
            .map(|e| e["release"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A service directory with pipeline `web`: a QA stage with pre- and post-approvers, under
/// `queue`.
fn web_dir(queue: &str) -> tempfile::TempDir {
    let dir = service_dir();
    std::fs::write(
        dir.path().join("pipelines/web.toml"),
        format!(
            r#"
version = 1
name = "web"
[[stages]]
name = "qa"
queue = {queue}
pre-approval = {{ approvers = ["bob"] }}
post-approval = {{ approvers = ["bob"] }}
[[stages.tasks]]
plugin = "./kit.wasm"
config = {{ action = "noop" }}
"#
        ),
    )
    .unwrap();
    dir
}

/// R1..R5 on `web_dir(queue)`, in a server process.
fn r1_to_r5(queue: &str) -> (Process, Vec<String>) {
    let process = Process::start(web_dir(queue));
    let releases = (0..5)
        .map(|_| {
            let reply = process.call(
                "rita",
                "POST",
                "/api/v1/pipelines/web/releases",
                Some(json!({})),
            );
            assert_eq!(reply.status, 201, "{}", reply.text());
            reply.json()["name"].as_str().unwrap().to_owned()
        })
        .collect();
    (process, releases)
}

#[test]
fn what_the_audit_trail_says_is_already_in_the_pending_list() {
    // Commit 1 creates the release, queued on QA; commit 2 is its turn, which asks for the
    // pre-approval. The process stops dead right after commit 2 is durable, before the engine
    // hears of it: a client that reads the entry and then the pending list must find the
    // approval there.
    let dir = web_dir(r#"{ policy = "sequential" }"#);
    let (mut child, address, lines) = serve(dir.path(), Some(2));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let call = |who: &str, path: &str| {
        let client = Client::new(&address, Some(token(who))).unwrap();
        let body = path.ends_with("/releases").then(|| b"{}".to_vec());
        let method = if body.is_some() { "POST" } else { "GET" };
        runtime
            .block_on(client.send(method, path, body, &[]))
            .unwrap()
    };
    let created = call("rita", "/api/v1/pipelines/web/releases");
    assert_eq!(created.status, 201, "{}", created.text());
    wait_line(&lines, "sluice-fault: paused after commit 2");
    let audit = call("vic", "/api/v1/audit?limit=1").json();
    let last = &audit["entries"][0];
    assert_eq!(last["release"], "web-1", "{audit}");
    assert!(
        last["what"]
            .as_str()
            .unwrap()
            .contains("its turn in the queue"),
        "{audit}"
    );
    let pending = call("vic", "/api/v1/approvals").json();
    assert_eq!(pending["approvals"][0]["id"], "web-1.qa.1.pre", "{pending}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sequential_r1_to_r5_survives_a_sigkill_between_turns() {
    let (mut p, r) = r1_to_r5(r#"{ policy = "sequential" }"#);
    for (i, release) in r.iter().enumerate() {
        p.wait_pending(std::slice::from_ref(&pre(release)));
        p.approve(&pre(release));
        p.wait_pending(std::slice::from_ref(&post(release)));
        p.approve(&post(release));
        if i == 0 {
            // Killed as R1 ends: R2's turn may or may not have been committed.
            p.kill_and_restart();
        }
    }
    p.wait_pending(&[]);
    assert_eq!(
        p.deployed(),
        r,
        "one at a time, R1 to R5, across the restart"
    );
}

#[test]
fn latest_only_r1_to_r5_survives_a_sigkill_between_turns() {
    let (mut p, r) = r1_to_r5(r#"{ policy = "latest-only" }"#);
    p.wait_pending(std::slice::from_ref(&pre(&r[0])));
    p.approve(&pre(&r[0]));
    p.wait_pending(std::slice::from_ref(&post(&r[0])));
    p.approve(&post(&r[0]));
    p.kill_and_restart();
    p.wait_pending(std::slice::from_ref(&pre(&r[4])));
    // R2..R4 are skipped in the same decision that gave R5 its turn (each in its own commit).
    p.wait("R2..R4 skipped", |p| {
        r[1..4]
            .iter()
            .all(|s| p.release(s)["stages"][0]["state"] == "skipped")
    });
    for skipped in &r[1..4] {
        let release = p.release(skipped);
        assert_eq!(release["stages"][0]["state"], "skipped", "{release}");
        assert_eq!(release["approvals"], json!([]), "never asked");
    }
    p.approve(&pre(&r[4]));
    p.wait_pending(std::slice::from_ref(&post(&r[4])));
    p.approve(&post(&r[4]));
    p.wait_pending(&[]);
    assert_eq!(p.deployed(), [r[0].clone(), r[4].clone()]);
}

#[test]
fn parallel_r1_to_r5_survives_a_sigkill_mid_way() {
    let (mut p, r) = r1_to_r5(r#"{ policy = "parallel" }"#);
    let pres: Vec<String> = r.iter().map(|r| pre(r)).collect();
    p.wait_pending(&pres);
    // Killed with five approvals pending (and no task running, which would fail as
    // interrupted): after the restart all five are still asked for.
    p.kill_and_restart();
    p.wait_pending(&pres);
    for id in &pres {
        p.approve(id);
    }
    let posts: Vec<String> = r.iter().map(|r| post(r)).collect();
    p.wait_pending(&posts);
    for id in &posts {
        p.approve(id);
    }
    p.wait_pending(&[]);
    let mut deployed = p.deployed();
    deployed.sort();
    assert_eq!(deployed, r);
}
