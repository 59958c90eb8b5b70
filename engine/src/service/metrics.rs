//! `/metrics`: task durations, measured from the commit that marks a task running to the
//! commit that records its end as the service sees them; releases and deployments by state,
//! counted as they change; and the Prometheus text of every metric.
//!
//! The counts by state are the store's, kept in the commit of every change (`store/index.rs`):
//! a scrape reads a few counters, never a release.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::live::TaskKey;
use crate::core::{Release, TaskState};
use crate::store::StoreError;

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

/// Upper bounds of the dispatch latency histogram's buckets, in seconds.
pub const DISPATCH_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        self.observe_in(&BUCKETS, seconds);
    }

    /// Counts one observation of `seconds` in the buckets `bounds`.
    pub(super) fn observe_in(&mut self, bounds: &[f64; BUCKETS.len()], seconds: f64) {
        for (bound, count) in bounds.iter().zip(&mut self.buckets) {
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

/// Appends histogram `name` in the text format.
fn histogram(out: &mut String, name: &str, help: &str, bounds: &[f64], values: &Histogram) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
    for (bound, n) in bounds.iter().zip(values.buckets) {
        out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {n}\n"));
    }
    out.push_str(&format!(
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}\n",
        count = values.count,
        sum = values.sum
    ));
}

impl super::Service {
    /// Every metric in the Prometheus text format (version 0.0.4): releases and stage
    /// deployments by state, the queue's depth, task durations, agents online and jobs queued
    /// by pool, dispatch latency, pending approvals, the releases being driven and the
    /// idempotency receipts stored.
    pub fn metrics_text(&self) -> Result<String, StoreError> {
        let counts = self.store().state_counts()?;
        let (by_state, stages) = (counts.releases, counts.deployments);
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
        histogram(
            &mut out,
            "sluice_task_duration_seconds",
            "Task run time, from running to ended.",
            &BUCKETS,
            &self.task_durations(),
        );
        let agents = self.agents();
        let pools = agents.gauges();
        out.push_str("# HELP sluice_agents_online Agents online (renewing or polling), by pool.\n# TYPE sluice_agents_online gauge\n");
        for gauges in &pools {
            let (pool, n) = (&gauges.pool, gauges.online);
            out.push_str(&format!("sluice_agents_online{{pool=\"{pool}\"}} {n}\n"));
        }
        out.push_str("# HELP sluice_jobs_queued Jobs waiting for an agent, by pool.\n# TYPE sluice_jobs_queued gauge\n");
        for gauges in &pools {
            let (pool, n) = (&gauges.pool, gauges.queued);
            out.push_str(&format!("sluice_jobs_queued{{pool=\"{pool}\"}} {n}\n"));
        }
        histogram(
            &mut out,
            "sluice_dispatch_latency_seconds",
            "Jobs from queued to leased to an agent.",
            &DISPATCH_BUCKETS,
            &agents.dispatch_latencies(),
        );
        out.push_str(&format!(
            "# HELP sluice_pending_approvals Approvals waiting for a decision.\n# TYPE sluice_pending_approvals gauge\nsluice_pending_approvals {}\n",
            self.pending_count()
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
