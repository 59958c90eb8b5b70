//! Write [Sluice](https://example.invalid/sluice) plugins: deployment **tasks**, **gates** and
//! **artifact sources**, each a WebAssembly component built for `wasm32-wasip2`.
//!
//! A plugin is a type implementing one of the traits [`Task`], [`Gate`] or [`ArtifactSource`]
//! and one export macro. The generated WebAssembly bindings stay hidden.
//!
//! ```no_run
//! use serde::Deserialize;
//! use sluice_plugin_sdk::{Error, Report, Task, TaskInput, log};
//!
//! /// What the pipeline writes under the task.
//! #[derive(Deserialize)]
//! struct Config {
//!     greeting: String,
//! }
//!
//! struct Hello;
//!
//! impl Task for Hello {
//!     fn run(input: TaskInput) -> Result<Report, Error> {
//!         let config: Config = input.config.parse()?;
//!         log::info(format!("{} from stage {}", config.greeting, input.context.stage));
//!         Ok(Report::new().output("greeted", "yes"))
//!     }
//! }
//!
//! sluice_plugin_sdk::export_task!(Hello);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`) and try it
//! with `sluice plugin run target/wasm32-wasip2/release/hello.wasm --config task.toml`.
//!
//! # The sandbox
//!
//! A plugin gets nothing it was not granted. Files are reachable only under the directories the
//! pipeline grants (`std::fs` works there as usual), environment variables only when named in the
//! grants (`std::env::var`), outbound HTTP only to granted hosts (through `wasi:http`), and no
//! sockets at all. Memory, time, log volume and output size are bounded; exceeding a bound fails
//! the task with a message naming the limit. `println!` and `eprintln!` write log lines.

#![deny(missing_docs)]

mod config;
pub mod files;
pub mod http;
pub mod log;
mod report;
pub mod units;

#[doc(hidden)]
pub mod __private;

pub use config::Config;
pub use report::{Health, Output, Report};

pub use __private::types::{
    Artifact, Error, ReleaseContext as Context, Variable, VersionInfo as Version,
};

/// Exports a [`Task`] implementation as the component's `task` world.
///
/// Use it once per type, at the crate root: `sluice_plugin_sdk::export_task!(MyTask);`
pub use sluice_plugin_sdk_macros::export_task;

/// Exports a [`Gate`] implementation as the component's `gate` world.
///
/// A type may implement both [`Task`] and [`Gate`] and be exported with both macros.
pub use sluice_plugin_sdk_macros::export_gate;

/// Exports an [`ArtifactSource`] implementation as the component's `artifact-source` world.
pub use sluice_plugin_sdk_macros::export_artifact_source;

/// A deployment task: one step of a stage.
pub trait Task {
    /// Runs the task once.
    ///
    /// Return `Ok` when the step is done; a [`Report`] with warnings marks the task as
    /// *succeeded with issues*. Return `Err` when it could not be done.
    fn run(input: TaskInput) -> Result<Report, Error>;
}

/// A condition evaluated, possibly many times, before or after a deployment.
pub trait Gate {
    /// Evaluates the condition once. An unhealthy target is `Ok(Health::Unhealthy(..))`; return
    /// `Err` only when the gate could not be evaluated at all.
    fn evaluate(input: TaskInput) -> Result<Health, Error>;
}

/// Where the versions of an artifact come from.
pub trait ArtifactSource {
    /// Lists the versions available, in any order: the engine sorts them newest first.
    fn list_versions(config: Config) -> Result<Vec<Version>, Error>;

    /// Downloads `version` into `destination`, a guest path to an empty directory granted
    /// read-write, and returns what is known about it.
    fn fetch(config: Config, version: &str, destination: &str) -> Result<Version, Error>;
}

/// Everything a task or gate is given.
#[derive(Debug, Clone)]
pub struct TaskInput {
    /// The configuration the pipeline wrote under the task or gate.
    pub config: Config,
    /// Where in the release the plugin runs.
    pub context: Context,
    /// The variables in scope.
    pub variables: Variables,
}

/// The variables in scope for a task or gate.
#[derive(Debug, Clone, Default)]
pub struct Variables(Vec<Variable>);

impl Variables {
    /// Wraps a list of variables.
    pub fn new(variables: Vec<Variable>) -> Self {
        Self(variables)
    }

    /// The value of the variable `name`, if it is set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.as_str())
    }

    /// All variables, in the order the engine gave them.
    pub fn iter(&self) -> impl Iterator<Item = &Variable> {
        self.0.iter()
    }
}

impl Error {
    /// A failure of the plugin's work, with a message the pipeline's owner can act on.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        Error::Failed(message.to_string())
    }

    /// A configuration problem: say which field and how to fix it.
    pub fn invalid_config(message: impl std::fmt::Display) -> Self {
        Error::InvalidConfig(message.to_string())
    }
}
