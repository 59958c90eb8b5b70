//! A failed commit on the command path, in process: an engine over a store whose disk fills
//! for one decision. The decision is refused with the full disk, nothing of it stays in the
//! driver or the store (no receipt), and its retry once space returns applies it once, its
//! receipt in the retry's commit; the release then runs to its end.

use std::sync::Arc;
use std::time::Duration;

use sluice::core::{ApprovalKind, Authority, Event, ReleaseState, StageState};
use sluice::pipeline;
use sluice::plugin::{HostConfig, PluginHost};
use sluice::scheduler::{Engine, EngineError, Observer, Pending};
use sluice::store::faulty::FaultPlan;
use sluice::store::{Receipt, Store};

use crate::engine::{Project, options};

const PIPELINE: &str = r#"
version = 1
name = "held"
[[stages]]
name = "qa"
pre-approval = { approvers = ["alice"] }
[[stages.tasks]]
name = "mark"
plugin = "kit"
config = { action = "append", path = "/project/markers.txt", line = "ran" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)", guest = "/project", access = "rw" }]
"#;

struct Quiet;
impl Observer for Quiet {}

fn decide() -> Event {
    Event::Decide {
        stage: "qa".into(),
        attempt: 1,
        kind: ApprovalKind::Pre,
        by: "alice".into(),
        groups: vec![],
        approve: true,
        comment: "ok".into(),
        authority: Authority::Approver,
        defer_until: None,
    }
}

/// Waits (bounded, woken by each commit) until `ready` holds of the stored release.
async fn until(store: &Store, name: &str, ready: impl Fn(&sluice::core::Release) -> bool) {
    let mut commits = store.audit_len();
    let wait = async {
        while !ready(&store.release(name).unwrap().unwrap()) {
            commits.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the release never got there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_refused_for_a_full_disk_changes_nothing_and_its_retry_applies_it_once() {
    let project = Project::new(PIPELINE);
    let plan = FaultPlan::new();
    let store = Store::open_faulty(&project.data_dir(), &plan).unwrap();
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(project.data_dir().join("cache")),
        ..HostConfig::default()
    })
    .unwrap();
    let engine = Arc::new(Engine::new(store, Arc::new(host), project.data_dir()));
    engine.serve(Arc::new(Pending), Arc::new(Quiet)).unwrap();
    let loaded = pipeline::load(&project.pipeline()).unwrap();
    let name = engine
        .create_release(&loaded, options(), None)
        .await
        .unwrap()
        .name;
    engine.start(&name);
    let store = engine.store();
    until(store, &name, |r| {
        r.stages[0].state() == StageState::AwaitingApproval
    })
    .await;
    let before = store.release(&name).unwrap().unwrap();

    plan.set_full(true);
    let receipt = Receipt::expiring("alice\nkey-1", |r| r.revision.to_string().into_bytes());
    let refused = engine.submit(&name, decide(), "alice", Some(receipt)).await;
    assert!(
        matches!(&refused, Err(EngineError::Store(e)) if e.is_no_space()),
        "{refused:?}"
    );
    plan.set_full(false);
    assert!(store.probe(), "the latched store probes");
    assert_eq!(store.health(), sluice::store::Health::Healthy);
    assert_eq!(
        store.release(&name).unwrap().unwrap(),
        before,
        "nothing stored"
    );
    assert_eq!(
        store.fresh_receipt("alice\nkey-1", 0).unwrap(),
        None,
        "no receipt"
    );

    // The driver kept the stored release: the same decision applies now, once.
    let receipt = Receipt::expiring("alice\nkey-1", |r| r.revision.to_string().into_bytes());
    let applied = engine
        .submit(&name, decide(), "alice", Some(receipt))
        .await
        .expect("the retry applies");
    assert!(applied.revision > before.revision, "the decision applied");
    let stored = store.fresh_receipt("alice\nkey-1", 0).unwrap();
    assert_eq!(stored, Some(applied.revision.to_string().into_bytes()));
    let again = engine.submit(&name, decide(), "alice", None).await;
    assert!(
        matches!(again, Err(EngineError::Transition(_))),
        "a second decision does not apply: {again:?}"
    );
    until(store, &name, |r| r.state == ReleaseState::Succeeded).await;
    assert_eq!(project.lines("markers.txt"), ["ran"]);
    let decisions = store.audit().unwrap();
    let decisions = decisions.iter().filter(|e| e.actor == "alice").count();
    assert_eq!(decisions, 1, "the decision was stored once");
}
