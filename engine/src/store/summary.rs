//! What lists, counts and indexes read of a release, without its plan: a small summary record
//! per release (name, pipeline, number, state, creator, times, each stage's latest attempt,
//! the artifact versions, where its approvals are indexed), and each approval as listed
//! ([`ApprovalView`], its id made here once). Both are made from the release as committed, on
//! the caller's thread, and written in the commit of the release (`index.rs`).

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::core::{
    Approval, ApprovalKind, ApprovalState, Release, ReleaseState, StageState, approval_id,
};

/// A release as lists and counts see it: a few hundred bytes, whatever its plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// `pipeline-number`.
    pub name: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Number within the pipeline.
    pub number: u64,
    /// State.
    pub state: ReleaseState,
    /// Who created it.
    pub creator: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// When (Unix milliseconds).
    pub created_at: u64,
    /// The release's revision this summary was made from.
    pub revision: u64,
    /// Stages, in plan order.
    pub stages: Vec<StageSummary>,
    /// Artifact versions chosen: (alias, version id).
    #[serde(default)]
    pub artifacts: Vec<(String, String)>,
    /// Where each approval is indexed (`index.rs` removes these rows when it is rewritten).
    #[serde(default)]
    pub(super) approvals: Vec<ApprovalKey>,
    /// A hash of the approvals' listed form: unchanged approvals are not rewritten.
    #[serde(default)]
    pub(super) approvals_hash: u64,
}

/// A stage's latest attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSummary {
    /// Stage name.
    pub name: String,
    /// The state users see (the latest attempt's, or not-started).
    pub state: StageState,
    /// The latest attempt's number; 0 while not started.
    pub attempt: u32,
    /// When the latest attempt finished.
    #[serde(default)]
    pub finished_at: Option<u64>,
}

/// An approval's place: stage (its index in the plan), attempt, position among the attempt's
/// approvals, and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ApprovalKey {
    pub(super) stage: u32,
    pub(super) attempt: u32,
    pub(super) pos: u32,
    pub(super) state: ApprovalState,
}

/// An approval, as approvers look for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalView {
    /// `release.stage.attempt.pre|post`.
    pub id: String,
    /// Release.
    pub release: String,
    /// Pipeline.
    pub pipeline: String,
    /// Stage.
    pub stage: String,
    /// Attempt.
    pub attempt: u32,
    /// Who created the release.
    pub release_creator: String,
    /// The approval itself: kind, state, approvers, policy, decisions, times.
    #[serde(flatten)]
    pub approval: Approval,
}

/// Every approval of a release, as views.
pub fn approvals_of(release: &Release) -> impl Iterator<Item = ApprovalView> + '_ {
    placed(release).map(|(_, view)| view)
}

/// Every approval of a release with its place.
fn placed(release: &Release) -> impl Iterator<Item = (ApprovalKey, ApprovalView)> + '_ {
    release
        .stages
        .iter()
        .enumerate()
        .flat_map(move |(s, stage)| {
            stage.attempts.iter().flat_map(move |attempt| {
                // A reassigned approval is followed by its successor of the same kind: only the
                // latest of each kind carries the id.
                let latest =
                    |kind: ApprovalKind| attempt.approvals.iter().rposition(|a| a.kind == kind);
                attempt
                    .approvals
                    .iter()
                    .enumerate()
                    .map(move |(i, approval)| {
                        let mut id =
                            approval_id(&release.name, &stage.name, attempt.number, approval.kind);
                        if latest(approval.kind) != Some(i) {
                            id.push_str(&format!("~{i}"));
                        }
                        let key = ApprovalKey {
                            stage: s as u32,
                            attempt: attempt.number,
                            pos: i as u32,
                            state: approval.state,
                        };
                        let view = ApprovalView {
                            id,
                            release: release.name.clone(),
                            pipeline: release.pipeline.clone(),
                            stage: stage.name.clone(),
                            attempt: attempt.number,
                            release_creator: release.creator.clone(),
                            approval: approval.clone(),
                        };
                        (key, view)
                    })
            })
        })
}

/// A release's summary and its approvals, encoded: what its commit writes beside the record.
pub(super) struct Indexed {
    pub(super) summary: Summary,
    pub(super) bytes: Vec<u8>,
    /// Each approval's place and its view's JSON, in the order of `summary.approvals`.
    pub(super) approvals: Vec<(ApprovalKey, Vec<u8>)>,
}

impl Indexed {
    /// The summary and approvals of `release` as it is now.
    pub(super) fn of(release: &Release) -> Result<Self, StoreError> {
        let encode = |e: serde_json::Error| StoreError::Storage(e.to_string());
        let mut approvals = Vec::new();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (key, view) in placed(release) {
            let bytes = serde_json::to_vec(&view).map_err(encode)?;
            (key.stage, key.attempt, key.pos, approval_label(key.state)).hash(&mut hasher);
            bytes.hash(&mut hasher);
            approvals.push((key, bytes));
        }
        let summary = Summary {
            name: release.name.clone(),
            pipeline: release.pipeline.clone(),
            number: release.number,
            state: release.state,
            creator: release.creator.clone(),
            description: release.description.clone(),
            created_at: release.created_at,
            revision: release.revision,
            stages: release
                .stages
                .iter()
                .map(|s| {
                    let last = s.attempts.last();
                    StageSummary {
                        name: s.name.clone(),
                        state: s.state(),
                        attempt: last.map_or(0, |a| a.number),
                        finished_at: last.and_then(|a| a.finished_at),
                    }
                })
                .collect(),
            artifacts: release
                .artifacts
                .iter()
                .map(|a| (a.alias.clone(), a.version.id.clone()))
                .collect(),
            approvals: approvals.iter().map(|(key, _)| *key).collect(),
            approvals_hash: hasher.finish(),
        };
        let bytes = serde_json::to_vec(&summary).map_err(encode)?;
        Ok(Self {
            summary,
            bytes,
            approvals,
        })
    }
}

/// The kebab-case name of a release state, as the API and `/metrics` spell it.
pub(super) fn release_label(state: ReleaseState) -> &'static str {
    match state {
        ReleaseState::Active => "active",
        ReleaseState::Succeeded => "succeeded",
        ReleaseState::PartiallySucceeded => "partially-succeeded",
        ReleaseState::Failed => "failed",
        ReleaseState::Abandoned => "abandoned",
    }
}

/// The kebab-case name of a stage deployment's state.
pub(super) fn stage_label(state: StageState) -> &'static str {
    match state {
        StageState::NotStarted => "not-started",
        StageState::Queued => "queued",
        StageState::Scheduled => "scheduled",
        StageState::AwaitingApproval => "awaiting-approval",
        StageState::EvaluatingGates => "evaluating-gates",
        StageState::InProgress => "in-progress",
        StageState::Succeeded => "succeeded",
        StageState::PartiallySucceeded => "partially-succeeded",
        StageState::Failed => "failed",
        StageState::Rejected => "rejected",
        StageState::Canceled => "canceled",
        StageState::Skipped => "skipped",
    }
}

/// The kebab-case name of an approval's state.
pub(super) fn approval_label(state: ApprovalState) -> &'static str {
    match state {
        ApprovalState::Pending => "pending",
        ApprovalState::Approved => "approved",
        ApprovalState::Rejected => "rejected",
        ApprovalState::Reassigned => "reassigned",
        ApprovalState::Canceled => "canceled",
        ApprovalState::Skipped => "skipped",
        ApprovalState::Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_label<T: Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn labels_are_the_names_the_api_speaks() {
        use ReleaseState as R;
        for state in [
            R::Active,
            R::Succeeded,
            R::PartiallySucceeded,
            R::Failed,
            R::Abandoned,
        ] {
            assert_eq!(release_label(state), serde_label(state));
        }
        use StageState as S;
        for state in [
            S::NotStarted,
            S::Queued,
            S::Scheduled,
            S::AwaitingApproval,
            S::EvaluatingGates,
            S::InProgress,
            S::Succeeded,
            S::PartiallySucceeded,
            S::Failed,
            S::Rejected,
            S::Canceled,
            S::Skipped,
        ] {
            assert_eq!(stage_label(state), serde_label(state));
        }
        use ApprovalState as A;
        for state in [
            A::Pending,
            A::Approved,
            A::Rejected,
            A::Reassigned,
            A::Canceled,
            A::Skipped,
            A::Expired,
        ] {
            assert_eq!(approval_label(state), serde_label(state));
        }
    }
}
