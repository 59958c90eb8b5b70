//! Queueing policies, on the seed's R1..R5 scenario: five releases created in quick succession,
//! a QA stage with pre- and post-deployment approvers. Each test asserts, step by step, which
//! approvals are requested (and which are not yet), and the order of the deployments.

use sluice::core::{ReleaseState, StageState};

use crate::support::Harness;

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
