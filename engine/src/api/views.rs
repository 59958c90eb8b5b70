//! What the API answers with: views of the stored records, with the ids clients need.

use serde::Serialize;
use serde_json::{Value, json};

use crate::core::{Attempt, ChosenArtifact, Release, ReleaseState, StageState};
use crate::service::{ApprovalView, approvals_of};

/// A release as the API shows it: the snapshot's identity, its state, every stage's attempts,
/// and its approvals with their ids.
#[derive(Serialize)]
pub struct ReleaseView<'a> {
    name: &'a str,
    pipeline: &'a str,
    number: u64,
    state: ReleaseState,
    creator: &'a str,
    description: Option<&'a str>,
    created_at: u64,
    revision: u64,
    artifacts: &'a [ChosenArtifact],
    variables: &'a [(String, String)],
    digests: &'a [(String, String)],
    stages: Vec<StageView<'a>>,
    approvals: Vec<ApprovalView>,
}

#[derive(Serialize)]
struct StageView<'a> {
    name: &'a str,
    state: StageState,
    attempts: &'a [Attempt],
}

impl<'a> ReleaseView<'a> {
    /// The view of `release`.
    pub fn of(release: &'a Release) -> Self {
        Self {
            name: &release.name,
            pipeline: &release.pipeline,
            number: release.number,
            state: release.state,
            creator: &release.creator,
            description: release.description.as_deref(),
            created_at: release.created_at,
            revision: release.revision,
            artifacts: &release.artifacts,
            variables: &release.variables,
            digests: &release.digests,
            stages: release
                .stages
                .iter()
                .map(|s| StageView {
                    name: &s.name,
                    state: s.state(),
                    attempts: &s.attempts,
                })
                .collect(),
            approvals: approvals_of(release).collect(),
        }
    }
}

/// One line of a release list.
pub fn summary(release: &Release) -> Value {
    json!({
        "name": release.name,
        "pipeline": release.pipeline,
        "number": release.number,
        "state": release.state,
        "creator": release.creator,
        "description": release.description,
        "created_at": release.created_at,
        "stages": release.stages.iter().map(|s| json!({"name": s.name, "state": s.state()})).collect::<Vec<_>>(),
    })
}

/// A state as its kebab-case name.
pub fn kebab<T: Serialize>(state: &T) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
