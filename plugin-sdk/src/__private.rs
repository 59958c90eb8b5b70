//! Generated bindings and the glue the export macros call. Not part of the public API.

pub use wit_bindgen;

wit_bindgen::generate!({
    path: "../wit",
    world: "imports",
    runtime_path: "wit_bindgen::rt",
});

pub use sluice::plugin::{log, types};

use crate::{ArtifactSource, Config, Context, Error, Gate, Health, Report, Task, TaskInput};
use crate::{Variable, Variables, Version};

fn input(config: String, context: Context, variables: Vec<Variable>) -> TaskInput {
    TaskInput {
        config: Config::new(config),
        context,
        variables: Variables::new(variables),
    }
}

/// Called by `export_task!`.
pub fn run_task<T: Task>(
    config: String,
    context: Context,
    variables: Vec<Variable>,
) -> Result<Report, Error> {
    T::run(input(config, context, variables))
}

/// Called by `export_gate!`.
pub fn evaluate_gate<T: Gate>(
    config: String,
    context: Context,
    variables: Vec<Variable>,
) -> Result<Health, Error> {
    T::evaluate(input(config, context, variables))
}

/// Called by `export_artifact_source!`.
pub fn list_versions<T: ArtifactSource>(config: String) -> Result<Vec<Version>, Error> {
    T::list_versions(Config::new(config))
}

/// Called by `export_artifact_source!`.
pub fn fetch<T: ArtifactSource>(
    config: String,
    version: &str,
    destination: &str,
) -> Result<Version, Error> {
    T::fetch(Config::new(config), version, destination)
}
