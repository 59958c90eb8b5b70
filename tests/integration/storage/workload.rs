//! The workload of the fault tests and the check of what a reopened store holds.
//!
//! W1-like releases (dev, qa, then prod behind a pre-approval; one idempotent testkit task a
//! stage, so recovery may run a task again) are created and driven through the library on a store
//! whose file obeys a [`FaultPlan`]; every commit acknowledged to its caller (a release created,
//! an `Observer::committed`) is recorded with the number of I/O calls made by then. After a cut,
//! [`check`] holds the reopened store against those acknowledgements.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sluice::core::{ApprovalKind, Release, ReleaseState};
use sluice::pipeline::{self, Loaded};
use sluice::plugin::{HostConfig, PluginHost};
use sluice::scheduler::{Approvals, CreateOptions, Engine, Observer};
use sluice::store::faulty::FaultPlan;
use sluice::store::{AuditEntry, Store};

use crate::engine::Project;

/// A no-op task.
pub const NOOP: &str = r#"{ action = "noop" }"#;

/// A task that logs 1,000 lines of 150 bytes (about 210 KiB with their overhead, under the
/// default log limit): its log, stored in the commit that ends it, grows the file.
pub const LOG: &str = r#"{ action = "log", count = 1000, size = 150 }"#;

/// The W1-like pipeline, each stage's one task configured as `task`.
pub fn w1(task: &str) -> String {
    let stage = |name: &str, extra: &str| {
        format!(
            "\n[[stages]]\nname = \"{name}\"\n{extra}\n[[stages.tasks]]\nplugin = \"kit\"\n\
             idempotent = true\nconfig = {task}\n"
        )
    };
    format!(
        "version = 1\nname = \"w1\"\n{}{}{}",
        stage("dev", ""),
        stage("qa", "after = \"dev\""),
        stage(
            "prod",
            "after = \"qa\"\npre-approval = { approvers = [\"alice\"] }"
        ),
    )
}

/// The project (testkit as `plugins/kit.wasm`) and its loaded pipeline.
pub struct Rig {
    _project: Project,
    pub loaded: Loaded,
}

impl Rig {
    pub fn new(task: &str) -> Self {
        let project = Project::new(&w1(task));
        let loaded = pipeline::load(&project.pipeline()).expect("the pipeline loads");
        Self {
            _project: project,
            loaded,
        }
    }
}

/// One plugin host for every run: the testkit is compiled once.
fn host() -> Arc<PluginHost> {
    static HOST: OnceLock<Arc<PluginHost>> = OnceLock::new();
    HOST.get_or_init(|| Arc::new(PluginHost::new(HostConfig::default()).expect("host")))
        .clone()
}

/// A commit acknowledged to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub release: String,
    pub revision: u64,
    pub what: String,
    /// I/O calls the plan had seen when the caller heard back: a cut before a later call
    /// comes after this acknowledgement.
    pub io: u64,
}

/// Approves every approval, and records every acknowledged commit.
struct Recorder {
    plan: Option<Arc<FaultPlan>>,
    acks: Mutex<Vec<Ack>>,
}

impl Recorder {
    fn ack(&self, release: &Release, what: &str) {
        let io = self.plan.as_ref().map_or(0, |p| p.io_calls());
        self.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Ack {
                release: release.name.clone(),
                revision: release.revision,
                what: what.to_owned(),
                io,
            });
    }
}

impl Observer for Recorder {
    fn committed(&self, release: &Release, what: &str) {
        self.ack(release, what);
    }
}

impl Approvals for Recorder {
    fn decide(&self, _: &Release, _: &str, _: ApprovalKind) -> Option<(bool, String)> {
        Some((true, "approved by the fault test".into()))
    }
}

/// What a run did: the acknowledged commits, and how each drive ended.
pub struct Run {
    pub acks: Vec<Ack>,
    /// Each release's final state, or the error its creation or drive ended with.
    pub ends: Vec<Result<ReleaseState, String>>,
}

impl Run {
    /// Every drive ended with the release succeeded.
    pub fn assert_succeeded(&self, what: &str) {
        for end in &self.ends {
            assert_eq!(end, &Ok(ReleaseState::Succeeded), "{what}");
        }
    }
}

/// On `store` (in `data_dir`): creates `fresh` new releases, and drives them and every release
/// the store holds unfinished, all at once, until each ends or the machine stops. The engine,
/// its store and every task are gone when this returns, so the file can be reopened.
pub fn run(
    rig: &Rig,
    data_dir: &Path,
    store: Store,
    plan: Option<&Arc<FaultPlan>>,
    fresh: usize,
) -> Run {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let recorder = Arc::new(Recorder {
        plan: plan.cloned(),
        acks: Mutex::new(Vec::new()),
    });
    let engine = Arc::new(Engine::new(store, host(), data_dir.to_owned()));
    let ends = runtime.block_on(async {
        let mut drives = tokio::task::JoinSet::new();
        let unfinished = match engine.unfinished() {
            Ok(releases) => releases,
            Err(e) => return vec![Err(e.to_string())],
        };
        for release in unfinished {
            let (engine, recorder) = (engine.clone(), recorder.clone());
            drives.spawn(async move {
                let done = engine
                    .drive(&release.name, recorder.clone(), recorder)
                    .await;
                done.map(|r| r.state).map_err(|e| e.to_string())
            });
        }
        for _ in 0..fresh {
            let (engine, recorder) = (engine.clone(), recorder.clone());
            let loaded = rig.loaded.clone();
            drives.spawn(async move {
                let options = CreateOptions {
                    creator: "fault-test".into(),
                    ..CreateOptions::default()
                };
                let release = engine
                    .create_release(&loaded, options, None)
                    .await
                    .map_err(|e| e.to_string())?;
                recorder.ack(&release, "created");
                let done = engine
                    .drive(&release.name, recorder.clone(), recorder)
                    .await;
                done.map(|r| r.state).map_err(|e| e.to_string())
            });
        }
        let mut ends = Vec::new();
        while let Some(end) = drives.join_next().await {
            ends.push(end.expect("a drive panicked"));
        }
        ends
    });
    drop(engine);
    // Tasks a stopped drive left behind hold the engine (and its store) until they end.
    runtime.shutdown_timeout(Duration::from_secs(30));
    let acks = std::mem::take(&mut *recorder.acks.lock().unwrap_or_else(|e| e.into_inner()));
    Run { acks, ends }
}

/// The releases of the store, by name; `at` says where the run was cut.
pub fn releases(store: &Store, at: &str) -> BTreeMap<String, Release> {
    store
        .releases()
        .unwrap_or_else(|e| panic!("{at}: a stored release does not decode: {e}"))
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect()
}

/// Holds the reopened `store` against `acks` (the acknowledged commits of `runs` runs, each
/// cut somewhere): every record decodes and the audit trail has no gap; every acknowledged
/// commit is there; per release, the audit entries are in revision order, the stored record is
/// the state after the last of them (never a mix of two commits), and besides the acknowledged
/// ones at most one entry per run was in flight. With one run, the entries are exactly the
/// acknowledged ones, or those and the one in flight after them.
pub fn check(store: &Store, acks: &[Ack], runs: usize, at: &str) {
    let trail = store
        .audit()
        .unwrap_or_else(|e| panic!("{at}: an audit entry does not decode: {e}"));
    for (i, entry) in trail.iter().enumerate() {
        assert_eq!(entry.seq, i as u64, "{at}: the audit trail has a gap");
    }
    let releases = releases(store, at);
    let mut entries: BTreeMap<&str, Vec<&AuditEntry>> = BTreeMap::new();
    for entry in &trail {
        entries
            .entry(entry.release.as_str())
            .or_default()
            .push(entry);
    }
    for (name, release) in &releases {
        let mine = entries.get(name.as_str()).map_or(&[][..], Vec::as_slice);
        let last = mine
            .last()
            .unwrap_or_else(|| panic!("{at}: release {name} is stored without an audit entry"));
        assert_eq!(
            last.revision, release.revision,
            "{at}: {name}'s record and its last audit entry disagree"
        );
        assert!(
            mine.windows(2).all(|w| w[0].revision < w[1].revision),
            "{at}: {name}'s audit entries are out of order"
        );
        if !acks.iter().any(|a| &a.release == name) {
            assert!(
                mine.len() <= runs,
                "{at}: {name} was never acknowledged yet holds {} entries",
                mine.len()
            );
        }
        store
            .logs_of(name)
            .unwrap_or_else(|e| panic!("{at}: a task log of {name} does not decode: {e}"));
    }
    for name in entries.keys() {
        assert!(
            releases.contains_key(*name),
            "{at}: audit entries of {name}, which is not stored"
        );
    }
    let mut acked: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    for ack in acks {
        acked
            .entry(ack.release.as_str())
            .or_default()
            .push((ack.revision, ack.what.as_str()));
    }
    for (name, want) in &acked {
        let found: Vec<(u64, &str)> = entries
            .get(name)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|e| (e.revision, e.what.as_str()))
            .collect();
        if runs == 1 {
            assert!(
                found.len() >= want.len() && found[..want.len()] == want[..],
                "{at}: {name} lost acknowledged commits: holds {found:?}, acknowledged {want:?}"
            );
            assert!(
                found.len() <= want.len() + 1,
                "{at}: {name} holds {found:?}, more than one beyond the acknowledged {want:?}"
            );
        } else {
            for commit in want {
                assert!(
                    found.contains(commit),
                    "{at}: {name} lost the acknowledged {commit:?}: holds {found:?}"
                );
            }
            assert!(
                found.len() <= want.len() + runs,
                "{at}: {name} holds {found:?}, more than {runs} beyond the acknowledged {want:?}"
            );
        }
    }
}

/// Reopens the store in `dir` on a fresh fault backend (no faults; syncs cost no fsync), through
/// the same open as `Store::open`: the damage check, then redb's recovery.
pub fn reopen(dir: &Path, at: &str) -> Store {
    Store::open_faulty(dir, &FaultPlan::new()).unwrap_or_else(|e| panic!("{at}: reopen: {e}"))
}

/// The acknowledgements a caller had heard before I/O call `cut`.
pub fn before(acks: &[Ack], cut: u64) -> Vec<Ack> {
    acks.iter().filter(|a| a.io < cut).cloned().collect()
}
