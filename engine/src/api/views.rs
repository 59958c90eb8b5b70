//! What the API answers with: views of the stored records, with the ids clients need.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::ToSchema;

use crate::core::{Attempt, ChosenArtifact, Release, ReleaseState, StageState};
use crate::service::{ApprovalView, approvals_of};

/// A release as the API shows it: the snapshot's identity, its state, every stage's attempts,
/// and its approvals with their ids.
#[derive(Serialize, ToSchema)]
pub struct ReleaseView<'a> {
    name: &'a str,
    pipeline: &'a str,
    number: u64,
    state: ReleaseState,
    creator: &'a str,
    description: Option<&'a str>,
    /// Unix milliseconds.
    created_at: u64,
    /// Bumped by every change; the audit trail names the revision each change made.
    revision: u64,
    artifacts: &'a [ChosenArtifact],
    /// Variables set at release time (name, value).
    variables: &'a [(String, String)],
    /// The sha256 of every plugin the release runs (reference, digest).
    digests: &'a [(String, String)],
    stages: Vec<StageView<'a>>,
    approvals: Vec<ApprovalView>,
}

#[derive(Serialize, ToSchema)]
struct StageView<'a> {
    name: &'a str,
    state: StageState,
    /// Why its job waits for an agent (a stage with a pool, in progress, not taken yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting: Option<String>,
    #[schema(value_type = Vec<Attempt>)]
    attempts: Cow<'a, [Attempt]>,
}

/// Attempts as shown: a secret output's sealed value is for the engine, never for the API
/// (its `value` is `***`).
fn shown(attempts: &[Attempt]) -> Cow<'_, [Attempt]> {
    let outputs = |a: &Attempt| {
        a.tasks
            .iter()
            .flat_map(|t| &t.outputs)
            .any(|o| o.sealed.is_some())
    };
    if !attempts.iter().any(outputs) {
        return Cow::Borrowed(attempts);
    }
    let mut owned = attempts.to_vec();
    for task in owned.iter_mut().flat_map(|a| &mut a.tasks) {
        for output in &mut task.outputs {
            output.sealed = None;
        }
    }
    Cow::Owned(owned)
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
                    waiting: None,
                    attempts: shown(&s.attempts),
                })
                .collect(),
            approvals: approvals_of(release).collect(),
        }
    }

    /// The same, saying why each stage in `waiting` (stage, reason) waits for an agent.
    pub fn waiting(mut self, waiting: Vec<(String, String)>) -> Self {
        for (stage, why) in waiting {
            if let Some(view) = self.stages.iter_mut().find(|s| s.name == stage) {
                view.waiting = Some(why);
            }
        }
        self
    }
}

/// One line of a release list.
#[derive(Serialize, ToSchema)]
pub struct ReleaseSummary<'a> {
    name: &'a str,
    pipeline: &'a str,
    number: u64,
    state: ReleaseState,
    creator: &'a str,
    description: Option<&'a str>,
    /// Unix milliseconds.
    created_at: u64,
    stages: Vec<StageSummary<'a>>,
}

/// A stage's name and state.
#[derive(Serialize, ToSchema)]
struct StageSummary<'a> {
    name: &'a str,
    state: StageState,
}

impl<'a> ReleaseSummary<'a> {
    /// The list line of a release, from its stored summary.
    pub fn of(release: &'a crate::store::Summary) -> Self {
        Self {
            name: &release.name,
            pipeline: &release.pipeline,
            number: release.number,
            state: release.state,
            creator: &release.creator,
            description: release.description.as_deref(),
            created_at: release.created_at,
            stages: release
                .stages
                .iter()
                .map(|s| StageSummary {
                    name: &s.name,
                    state: s.state,
                })
                .collect(),
        }
    }
}

/// `GET /pipelines`.
#[derive(Serialize, ToSchema)]
pub struct PipelineList {
    pub(super) pipelines: Vec<PipelineSummary>,
}

/// A pipeline in a list.
#[derive(Serialize, ToSchema)]
pub struct PipelineSummary {
    pub(super) name: String,
    /// The stored version being served.
    pub(super) version: u64,
    pub(super) stages: Vec<String>,
    /// Artifact aliases.
    pub(super) artifacts: Vec<String>,
}

/// `GET /pipelines/{name}`: the served version, its text and plan, and every stored version.
#[derive(Serialize, ToSchema)]
pub struct PipelineDetail {
    pub(super) name: String,
    pub(super) version: u64,
    /// The TOML text.
    pub(super) source: String,
    pub(super) versions: Vec<PipelineVersionInfo>,
    /// The validated plan the engine runs.
    #[schema(value_type = Object)]
    pub(super) plan: serde_json::Value,
}

/// One stored version of a pipeline.
#[derive(Serialize, ToSchema)]
pub struct PipelineVersionInfo {
    pub(super) version: u64,
    /// Unix milliseconds.
    pub(super) at: u64,
    /// Who put it (`file`: loaded from the pipelines directory).
    pub(super) by: String,
}

/// A pipeline saved.
#[derive(Serialize, ToSchema)]
pub struct PipelineSaved {
    pub(super) name: String,
    pub(super) version: u64,
}

/// A pipeline checked.
#[derive(Serialize, ToSchema)]
pub struct Validated {
    /// Always true: an invalid pipeline is a 422.
    pub(super) valid: bool,
    pub(super) name: String,
}

/// `GET /releases`: a page, newest first.
#[derive(Serialize, ToSchema)]
pub struct ReleaseList<'a> {
    pub(super) releases: Vec<ReleaseSummary<'a>>,
    /// Releases matching the filters, in all pages.
    pub(super) total: usize,
    pub(super) offset: usize,
}

/// `GET /approvals`.
#[derive(Serialize, ToSchema)]
pub struct ApprovalList {
    pub(super) approvals: Vec<ApprovalView>,
    /// Approvals matching the filters, in all pages.
    pub(super) total: usize,
    pub(super) offset: usize,
}

/// `GET /audit`.
#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub(super) entries: Vec<crate::store::AuditEntry>,
}

/// Every error: what went wrong and what to do, and more where it helps.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub(super) error: String,
    /// On a 500: the id under which the detail was logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) request_id: Option<String>,
    /// On an invalid pipeline: each problem, with where and how to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) diagnostics: Option<Vec<String>>,
    /// On a 409 about an approval: the approval as it is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) approval: Option<Box<ApprovalView>>,
}
