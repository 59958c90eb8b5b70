//! Task durations for `/metrics`: measured from the commit that marks a task running to the
//! commit that records its end, as the service sees them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::live::TaskKey;
use crate::core::{Release, TaskState};

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
