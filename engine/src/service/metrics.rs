//! `/metrics`: task durations, measured from the commit that marks a task running to the
//! commit that records its end as the service sees them; releases and deployments by state,
//! counted as they change; and the Prometheus text of every metric.
//!
//! The counts by state are kept, not computed per scrape: each scrape takes in the audit
//! entries committed since the last one (every change of a release has one) and re-reads only
//! the releases they name, so a scrape costs what changed, never a decode of every release.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use super::live::TaskKey;
use crate::core::{Release, TaskState};
use crate::store::{Store, StoreError};

/// Upper bounds of the histogram's buckets, in seconds (`+Inf` is implied).
pub const BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// A histogram of task durations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Cumulative counts, one per bucket of [`BUCKETS`].
    pub buckets: [u64; BUCKETS.len()],
    /// Every observation.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(&mut self.buckets) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Default)]
pub(super) struct TaskTimes {
    running: Mutex<HashMap<TaskKey, Instant>>,
    histogram: Mutex<Histogram>,
}

impl TaskTimes {
    /// Notes tasks that started and observes those that ended, after a commit of `release`.
    pub(super) fn committed(&self, release: &Release) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for stage in &release.stages {
            for attempt in &stage.attempts {
                for task in &attempt.tasks {
                    let key = (
                        release.name.clone(),
                        stage.name.clone(),
                        attempt.number,
                        task.name.clone(),
                    );
                    match task.state {
                        TaskState::Running => {
                            running.entry(key).or_insert_with(Instant::now);
                        }
                        TaskState::Pending => {}
                        _ => {
                            if let Some(started) = running.remove(&key) {
                                let mut histogram =
                                    self.histogram.lock().unwrap_or_else(|e| e.into_inner());
                                histogram.observe(started.elapsed().as_secs_f64());
                            }
                        }
                    }
                }
            }
        }
    }

    pub(super) fn histogram(&self) -> Histogram {
        self.histogram
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Releases by state and stage deployments (latest attempt) by state, as of audit entry
/// `synced`.
#[derive(Default)]
pub(super) struct StateCounts(Mutex<Counts>);

#[derive(Default)]
struct Counts {
    /// The audit trail's length taken in so far.
    synced: u64,
    /// Each release's state label and its stages' labels, as counted.
    counted: HashMap<String, (String, Vec<String>)>,
    releases: BTreeMap<String, u64>,
    deployments: BTreeMap<String, u64>,
}

impl Counts {
    fn set(&mut self, release: &Release) {
        let labels = (
            label(&release.state),
            release.stages.iter().map(|s| label(&s.state())).collect(),
        );
        if let Some((state, stages)) = self.counted.insert(release.name.clone(), labels.clone()) {
            down(&mut self.releases, &state);
            for stage in &stages {
                down(&mut self.deployments, stage);
            }
        }
        *self.releases.entry(labels.0).or_default() += 1;
        for stage in labels.1 {
            *self.deployments.entry(stage).or_default() += 1;
        }
    }
}

fn down(counts: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

impl StateCounts {
    /// Entries before `len` are in the releases counted next (at start).
    pub(super) fn synced_to(&self, len: u64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).synced = len;
    }

    /// Counts `release` as it is now.
    pub(super) fn update(&self, release: &Release) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(release);
    }

    /// Takes in the audit entries since the last call, re-reading each release they name once;
    /// then the counts by release state and by deployment state.
    #[allow(clippy::type_complexity)]
    fn current(
        &self,
        store: &Store,
    ) -> Result<(BTreeMap<String, u64>, BTreeMap<String, u64>), StoreError> {
        const BATCH: usize = 1024;
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let entries = store.audit_from(counts.synced, BATCH)?;
            let Some(last) = entries.last().map(|e| e.seq) else {
                break;
            };
            let named: std::collections::BTreeSet<&str> = entries
                .iter()
                .map(|e| e.release.as_str())
                .filter(|r| !r.is_empty())
                .collect();
            for name in named {
                if let Some(release) = store.release(name)? {
                    counts.set(&release);
                }
            }
            counts.synced = last + 1;
            if entries.len() < BATCH {
                break;
            }
        }
        Ok((counts.releases.clone(), counts.deployments.clone()))
    }
}

impl super::Service {
    /// Every metric in the Prometheus text format (version 0.0.4): releases and stage
    /// deployments by state, the queue's depth, task durations, pending approvals, the
    /// releases being driven and the idempotency receipts stored.
    pub fn metrics_text(&self) -> Result<String, StoreError> {
        let (by_state, stages) = self.counts.current(self.store())?;
        let mut out = String::new();
        out.push_str("# HELP sluice_releases Releases by state.\n# TYPE sluice_releases gauge\n");
        for (state, n) in by_state {
            out.push_str(&format!("sluice_releases{{state=\"{state}\"}} {n}\n"));
        }
        out.push_str(
            "# HELP sluice_deployments Stage deployments (latest attempt) by state.\n# TYPE sluice_deployments gauge\n",
        );
        let queued = stages.get("queued").copied().unwrap_or(0);
        for (state, n) in stages {
            out.push_str(&format!("sluice_deployments{{state=\"{state}\"}} {n}\n"));
        }
        out.push_str(&format!(
            "# HELP sluice_queue_depth Stage deployments waiting for their turn.\n# TYPE sluice_queue_depth gauge\nsluice_queue_depth {queued}\n"
        ));
        let durations = self.task_durations();
        out.push_str("# HELP sluice_task_duration_seconds Task run time, from running to ended.\n# TYPE sluice_task_duration_seconds histogram\n");
        for (bound, n) in BUCKETS.iter().zip(durations.buckets) {
            out.push_str(&format!(
                "sluice_task_duration_seconds_bucket{{le=\"{bound}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "sluice_task_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nsluice_task_duration_seconds_sum {sum}\nsluice_task_duration_seconds_count {count}\n",
            count = durations.count,
            sum = durations.sum
        ));
        out.push_str(&format!(
            "# HELP sluice_pending_approvals Approvals waiting for a decision.\n# TYPE sluice_pending_approvals gauge\nsluice_pending_approvals {}\n",
            self.pending_approvals().len()
        ));
        out.push_str(&format!(
            "# HELP sluice_releases_driving Releases the engine is driving now.\n# TYPE sluice_releases_driving gauge\nsluice_releases_driving {}\n",
            self.driving()
        ));
        out.push_str(&format!(
            "# HELP sluice_idempotency_receipts Answers of idempotent changes stored (until receipt-ttl, then swept).\n# TYPE sluice_idempotency_receipts gauge\nsluice_idempotency_receipts {}\n",
            self.receipt_count()
        ));
        Ok(out)
    }
}

/// A state as the kebab-case name its label value is.
fn label<T: serde::Serialize>(state: &T) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
