//! The pipeline file as written: TOML, `version = 1`, unknown fields rejected. Spans are kept so
//! that validation errors can point at `file:line:col`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawPipeline {
    pub version: Spanned<i64>,
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<Spanned<String>, Spanned<RawVariable>>,
    #[serde(default)]
    pub artifacts: BTreeMap<Spanned<String>, RawArtifact>,
    #[serde(default)]
    pub stages: Vec<RawStage>,
    pub triggers: Option<RawTriggers>,
    #[serde(default)]
    pub freezes: Vec<RawFreeze>,
}

/// `[[freezes]]`: a recurring (`cron` + `duration`) or one-off (`from` + `until`) deny window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawFreeze {
    pub reason: Option<String>,
    #[serde(default)]
    pub stages: Vec<Spanned<String>>,
    pub cron: Option<Spanned<String>>,
    pub time_zone: Option<Spanned<String>>,
    pub duration: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub until: Option<Spanned<String>>,
}

/// `[triggers]`: what creates releases by itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawTriggers {
    pub continuous: Option<RawContinuous>,
    pub schedule: Option<RawSchedule>,
}

/// `[triggers.continuous]`: a release for every new version of an artifact.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawContinuous {
    pub artifact: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub branch: Option<String>,
    pub tag: Option<String>,
}

/// `name = "value"` or `name = { value = "..", secret = true, from-env = "..", from-file = "..",
/// settable = true }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawVariable {
    Plain(String),
    Table(RawVariableTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawVariableTable {
    pub value: Option<String>,
    #[serde(default)]
    pub secret: bool,
    pub from_env: Option<String>,
    pub from_file: Option<String>,
    /// May be set when a release is created (pipeline variables only, never a secret).
    #[serde(default)]
    pub settable: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawArtifact {
    pub source: Spanned<String>,
    #[serde(default)]
    pub config: toml::Table,
    pub version: Option<Spanned<RawSelector>>,
    #[serde(default)]
    pub grants: RawGrants,
}

/// `version = "latest"`, `version = "1.2.0"`, `version = { branch = "main" }` or `{ tag = ".." }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSelector {
    Text(String),
    Filter(RawFilter),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilter {
    pub branch: Option<String>,
    pub tag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawGrants {
    #[serde(default)]
    pub dirs: Vec<Spanned<RawDir>>,
    #[serde(default)]
    pub env: Vec<Spanned<String>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// Access to the deployment's workspace: `none`, `ro` (default for tasks) or `rw`.
    pub workspace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawDir {
    pub host: String,
    pub guest: String,
    pub access: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawStage {
    pub name: Spanned<String>,
    pub after: Option<Spanned<RawAfter>>,
    #[serde(default)]
    pub after_partial_success: bool,
    #[serde(default)]
    pub variables: BTreeMap<Spanned<String>, Spanned<RawVariable>>,
    #[serde(default)]
    pub tasks: Vec<RawTask>,
    pub pre_approval: Option<Spanned<RawApproval>>,
    pub post_approval: Option<Spanned<RawApproval>>,
    pub queue: Option<RawQueue>,
    pub schedule: Option<RawSchedule>,
    pub pre_gates: Option<RawGates>,
    pub post_gates: Option<RawGates>,
    pub pool: Option<Spanned<String>>,
    #[serde(default)]
    pub demands: Vec<Spanned<String>>,
}

/// `[stages.pre-gates]` / `[stages.post-gates]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawGates {
    pub delay: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub min_healthy: Option<Spanned<String>>,
    pub approvals: Option<Spanned<String>>,
    pub rollback: Option<Spanned<bool>>,
    #[serde(default)]
    pub gates: Vec<RawGate>,
}

/// `[[stages.pre-gates.gates]]`: a plugin call like a task's, without the task-only settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawGate {
    pub name: Option<Spanned<String>>,
    pub plugin: Spanned<String>,
    pub config: Option<Spanned<toml::Table>>,
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub grants: RawGrants,
}

/// `schedule = { cron = "0 3 * * 1-5", time-zone = "Europe/Berlin" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawSchedule {
    pub cron: Spanned<String>,
    pub time_zone: Option<Spanned<String>>,
}

/// `after = "release"`, `after = "manual"` or `after = ["qa-east", "qa-west"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawAfter {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawTask {
    pub name: Option<Spanned<String>>,
    pub plugin: Spanned<String>,
    pub config: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub continue_on_error: bool,
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub idempotent: bool,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub grants: RawGrants,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub memory: Option<Spanned<String>>,
    pub log: Option<Spanned<String>>,
    pub output: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawApproval {
    pub approvers: Vec<Spanned<String>>,
    pub policy: Option<Spanned<String>>,
    pub required: Option<Spanned<u32>>,
    #[serde(default)]
    pub allow_release_creator: bool,
    #[serde(default)]
    pub skip_if_approved_in_previous_stage: bool,
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawQueue {
    pub policy: Option<Spanned<String>>,
    pub max_parallel: Option<Spanned<u32>>,
}
