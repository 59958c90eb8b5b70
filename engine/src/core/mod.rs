//! The pure core: the release, stage-deployment and approval lifecycles. No I/O, no clock, no
//! randomness — the scheduler feeds it events (with the time) and applies the effects it returns.

mod event;
mod machine;
pub mod model;
mod recover;

pub use event::{Authority, Effect, Event, INTERRUPTED, TaskOutcome};
pub use machine::{InvalidTransition, apply};
pub use model::*;
pub use recover::recover;

use crate::pipeline::Plan;

impl Release {
    /// A new release of `plan`, numbered `number`, with nothing started. Apply
    /// [`Event::Created`] to start the stages that start with the release.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: Plan,
        number: u64,
        creator: String,
        description: Option<String>,
        artifacts: Vec<ChosenArtifact>,
        variables: Vec<(String, String)>,
        digests: Vec<(String, String)>,
        now: u64,
    ) -> Self {
        Self {
            name: format!("{}-{number}", plan.name),
            pipeline: plan.name.clone(),
            number,
            creator,
            description,
            created_at: now,
            artifacts,
            variables,
            digests,
            state: ReleaseState::Active,
            stages: plan
                .stages
                .iter()
                .map(|s| StageRun {
                    name: s.name.clone(),
                    attempts: Vec::new(),
                })
                .collect(),
            revision: 0,
            plan,
        }
    }
}

#[cfg(test)]
mod tests;
