//! What crosses the plugin boundary: plain Rust types mirroring the WIT
//! records, used by the rest of the engine (which never sees wasmtime or generated bindings).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::limits::LimitExceeded;
use super::sealed::Sealed;
use super::text::Escaped;

/// A variable passed to a plugin, or an output variable a task returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Variable {
    /// Name as written in the pipeline.
    pub name: String,
    /// The clear value (secrets included: masking happens in logs, not here).
    pub value: String,
    /// Secrets are masked in every log line.
    pub secret: bool,
    /// A secret output as stored: its value encrypted (`value` is then `***`). Set by the
    /// scheduler only (never by a plugin), never shown (the API's views drop it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub sealed: Option<Sealed>,
}

/// One version of an artifact, as an artifact source describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Version {
    /// Version identifier, unique within the artifact.
    pub id: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: Option<u64>,
    /// Source branch.
    pub branch: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Source commit.
    pub commit: Option<String>,
    /// Anything else (key, value).
    pub metadata: Vec<(String, String)>,
}

/// An artifact already fetched into the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The pipeline's alias for the artifact.
    pub alias: String,
    /// The version the release uses.
    pub version: Version,
    /// Guest path of the fetched files.
    pub path: String,
}

/// Where in a release a plugin is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Context {
    /// Pipeline name.
    pub pipeline: String,
    /// Release name, e.g. `space-game-7`.
    pub release: String,
    /// Release number within the pipeline.
    pub release_number: u64,
    /// Stage name.
    pub stage: String,
    /// Deployment attempt, from 1.
    pub attempt: u32,
    /// The release's artifacts.
    pub artifacts: Vec<Artifact>,
    /// Guest path of the workspace, when granted.
    pub workspace: Option<String>,
}

/// What a task or gate is given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskInput {
    /// The plugin's configuration as JSON text.
    pub config: String,
    /// Where in the release.
    pub context: Context,
    /// Variables in scope.
    pub variables: Vec<Variable>,
}

/// What a successful task reports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskReport {
    /// Non-empty: the task succeeded with issues.
    pub warnings: Vec<String>,
    /// Output variables.
    pub outputs: Vec<Variable>,
}

/// One gate evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// The condition holds.
    Healthy,
    /// The condition does not hold, and why.
    Unhealthy(String),
}

/// A failure the plugin reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PluginError {
    /// The pipeline gave the plugin a configuration it rejects.
    InvalidConfig(String),
    /// The plugin tried and failed.
    Failed(String),
}

/// Why a plugin call did not produce a result. Each kind has its own message, one line that
/// says it was the plugin: a plugin's own error (quoted, as its own words), a limit, an exit, a
/// panic, an uncaught exception, a trap and a broken ABI are never confused, and none reads
/// like an engine crash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The plugin reported the failure itself.
    #[error("{}", match .0 {
        PluginError::InvalidConfig(m) => {
            format!("plugin rejected its configuration: \"{}\"", Escaped(m))
        }
        PluginError::Failed(m) => format!("plugin failed: \"{}\"", Escaped(m)),
    })]
    Plugin(PluginError),
    /// A sandbox limit stopped the plugin.
    #[error("{0}")]
    Limit(LimitExceeded),
    /// The plugin exited (WASI `exit`) instead of returning a result.
    #[error("plugin exited with status {0} instead of returning a result")]
    Exit(i32),
    /// The plugin panicked.
    #[error("plugin panicked: {0}")]
    Panic(String),
    /// A Python exception or JavaScript error the plugin did not catch, as its runtime
    /// reported it (the exception and where it was raised).
    #[error("plugin raised an error it did not catch: {0}")]
    Uncaught(String),
    /// The plugin trapped (a fault in its code, such as an out-of-bounds access).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin passed the host a value the component ABI forbids (a string that is not
    /// UTF-8, a pointer outside its memory, an unknown handle, …).
    #[error("plugin broke the component ABI: {0}")]
    Abi(String),
    /// The plugin could not be run at all.
    #[error("plugin could not be run: {0}")]
    Host(String),
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something is wrong but work goes on.
    Warn,
    /// Something failed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The plugin's `log` import.
    Plugin,
    /// The plugin's stdout.
    Stdout,
    /// The plugin's stderr.
    Stderr,
    /// The host, about the plugin (a denied request, for example).
    Host,
}

/// One line of a task's log, secrets already masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Time since the call started.
    pub at: Duration,
    /// Severity.
    pub level: Level,
    /// Origin.
    pub source: Source,
    /// The message.
    pub message: String,
    /// Structured fields (key, value).
    pub fields: Vec<(String, String)>,
}

impl fmt::Display for LogLine {
    /// `   0.012s info  message key=value`: how the CLI and the API show a stored line — one
    /// line, the plugin's text [`Escaped`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>8.3}s {:<5} {}",
            self.at.as_secs_f64(),
            self.level,
            Escaped(&self.message)
        )?;
        for (key, value) in &self.fields {
            write!(f, " {}={}", Escaped(key), Escaped(value))?;
        }
        Ok(())
    }
}

/// What a plugin reports while it runs, for a live view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// A log line.
    Line(LogLine),
    /// Progress, 0 to 100.
    Progress {
        /// Percent done.
        percent: u8,
        /// What is happening.
        message: String,
    },
}

/// The outcome of one plugin call, with the log it wrote.
#[derive(Debug)]
pub struct Invocation<T> {
    /// The result, or why there is none.
    pub result: Result<T, Failure>,
    /// Every log line the call wrote (bounded by the log limit).
    pub logs: Vec<LogLine>,
    /// Wall-clock time of the call, instantiation included.
    pub elapsed: Duration,
}
