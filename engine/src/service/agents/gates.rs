//! Gate jobs: one sample of a pooled stage's gates, evaluated by any agent of its pool that
//! meets its demands. An evaluation changes nothing until its results are committed, so its
//! lease is the board's alone (not stored): the epoch is the job's generation, one per
//! sample, and a late answer of an earlier sample is fenced off (409) as a task's is. After a
//! restart the recovery samples again.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Agents;
use super::board::{Held, Waiter};
use super::protocol::leased;
use crate::scheduler::{Dispatch, Remote};
use crate::service::ServiceError;
use crate::types::job::{Accepted, GatesReported};

/// The longest reason an agent may give for one gate (a longer one is cut).
const MAX_REASON: usize = 4096;
/// How long a report waits for its commit.
const COMMIT_WAIT: Duration = Duration::from_secs(60);

impl Agents {
    /// Leases gate job `id` to `agent`: its epoch is the job's generation.
    pub(super) fn lease_gates(
        &self,
        id: &str,
        generation: u64,
        agent: &str,
        queued: Option<Instant>,
    ) -> Option<(u64, Dispatch)> {
        let lease = self.lease();
        let mut guard = self.lock();
        let entry = (guard.1.entries.get_mut(id)).filter(|e| e.generation == generation)?;
        entry.held = Held::Leased {
            agent: agent.to_owned(),
            epoch: generation,
            expires: Instant::now() + lease,
        };
        let dispatch = entry.dispatch.clone();
        drop(guard);
        self.observe_latency(queued);
        Some((generation, dispatch))
    }

    /// The lease holder's answers to gate job `id`: one per gate the step named, in its
    /// order. Handed to the sample waiting; the job is over once they are committed.
    pub async fn gates(
        &self,
        token: &super::AgentToken,
        id: &str,
        mut report: GatesReported,
    ) -> Result<Accepted, ServiceError> {
        let fence = report.fence.clone();
        self.claim(token, &fence.agent)?;
        let (tx, ack) = oneshot::channel();
        {
            let mut guard = self.lock();
            let jobs = &mut guard.1;
            let entry = leased(jobs, id, &fence)?;
            let Some((names, _)) = &entry.gates else {
                return Err(ServiceError::Conflict(format!(
                    "job {id} evaluates no gates"
                )));
            };
            let given: Vec<&str> = report.results.iter().map(|r| r.gate.as_str()).collect();
            if given != names.iter().map(String::as_str).collect::<Vec<_>>() {
                return Err(ServiceError::BadRequest(format!(
                    "job {id}: report one result per gate the step named, in its order ({})",
                    names.join(", ")
                )));
            }
            for result in &mut report.results {
                if let Err(why) = &mut result.outcome {
                    cut(why, MAX_REASON);
                }
            }
            let Some(Waiter::Gates(waiter)) = entry.waiter.take() else {
                return Err(ServiceError::Conflict(format!(
                    "job {id}: its sample is over"
                )));
            };
            jobs.entries.remove(id);
            let _ = waiter.send(Remote::Reported {
                value: report.results,
                agent: fence.agent.clone(),
                ack: tx,
            });
        }
        match tokio::time::timeout(COMMIT_WAIT, ack).await {
            Ok(Ok(Ok(_))) => Ok(Accepted { done: true }),
            Ok(Ok(Err(refused))) => Err(ServiceError::from(refused)),
            _ => Err(ServiceError::Conflict(format!(
                "job {id}: the results were not committed (the release's driver stopped)"
            ))),
        }
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary, marking the cut.
fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [cut]");
    }
}
