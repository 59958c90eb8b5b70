//! Pipelines: parse (TOML, `version = 1`, unknown fields rejected) -> validate (every problem,
//! with `file:line:col` and a fix) -> plan (fully resolved, what a release snapshots);
//! `settable.rs`: which variables a release request may set, read from the plan;
//! `fence.rs`: no grant reaches the data directory.

mod error;
mod fence;
#[cfg(test)]
mod fuzz;
pub mod plan;
mod schema;
mod settable;
mod validate;

use std::path::Path;

pub use error::{Diagnostic, Location, PipelineError};
pub use fence::{Fence, check_grants, real};
pub use plan::*;
pub use settable::{NotSettable, RESERVED_PREFIX};
pub use validate::{BUILTIN_VARIABLES, Locations, references};

use crate::plugin::{PluginHost, PluginRef, World};

/// A pipeline file turned into a plan, with the places of things for later checks.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The plan.
    pub plan: Plan,
    /// Where artifacts' sources and tasks' plugins are written.
    pub locations: Locations,
}

/// Reads, parses and validates the pipeline at `path` (without loading its plugins).
pub fn load(path: &Path) -> Result<Loaded, PipelineError> {
    let shown = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| PipelineError {
        diagnostics: vec![Diagnostic {
            message: format!("cannot read the pipeline: {e}"),
            at: None,
            help: Some(format!("check that {shown} exists and is readable")),
        }],
    })?;
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    // Checked as a pipeline name by the validator, as a written `name` is: a file called
    // `..toml` or a folder called `.tmp` names no pipeline.
    let default_name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| s != "pipeline")
        .or_else(|| dir.file_name().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "pipeline".into());
    parse(&shown, &source, &dir, &default_name)
}

/// Parses and validates pipeline text. `file` names it in messages; `dir` is its directory.
pub fn parse(
    file: &str,
    source: &str,
    dir: &Path,
    default_name: &str,
) -> Result<Loaded, PipelineError> {
    let mut validator = validate::Validator::new(file, source, dir);
    let raw: schema::RawPipeline = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(e) => {
            let help = if e.message().contains("unknown field") {
                Some("remove the field or fix its spelling")
            } else if e.message().contains("missing field") {
                Some("add the field")
            } else {
                None
            };
            validator.error(e.span(), e.message().trim().to_owned(), help);
            return Err(PipelineError {
                diagnostics: validator.diagnostics,
            });
        }
    };
    let plan = validator.plan(raw, default_name);
    validator
        .diagnostics
        .sort_by_key(|d| d.at.as_ref().map(|at| (at.line, at.col)));
    if validator.diagnostics.is_empty() {
        Ok(Loaded {
            plan,
            locations: validator.locations,
        })
    } else {
        Err(PipelineError {
            diagnostics: validator.diagnostics,
        })
    }
}

/// Loads every plugin the plan uses and checks that each exports the world it is used as.
pub fn check_plugins(loaded: &Loaded, host: &PluginHost) -> Result<(), PipelineError> {
    check_worlds(loaded, |plugin| {
        host.load(plugin).map(|p| p.worlds().to_vec())
    })
}

/// [`check_plugins`] without compiling what the host has not compiled yet (start-up): each
/// plugin is read and validated, and its exports read from the binary
/// ([`PluginHost::outline`]); an import the host lacks is found when it is first loaded.
pub fn outline_plugins(loaded: &Loaded, host: &PluginHost) -> Result<(), PipelineError> {
    check_worlds(loaded, |plugin| host.outline(plugin))
}

/// Checks that every plugin the plan uses exports the world it is used as, by `worlds_of`.
fn check_worlds(
    loaded: &Loaded,
    worlds_of: impl Fn(&PluginRef) -> Result<Vec<World>, crate::plugin::LoadError>,
) -> Result<(), PipelineError> {
    let mut diagnostics = Vec::new();
    let mut check = |reference: &str, world: World, at: Option<&Location>, what: String| {
        let plugin_ref = PluginRef::parse(reference, Path::new(&loaded.plan.dir));
        match worlds_of(&plugin_ref) {
            Ok(worlds) if worlds.contains(&world) => {}
            Ok(worlds) => {
                let has: Vec<String> = worlds.iter().map(ToString::to_string).collect();
                diagnostics.push(Diagnostic {
                    message: format!(
                        "{what}: `{reference}` does not export the {world} world (it exports: {})",
                        has.join(", ")
                    ),
                    at: at.cloned(),
                    help: Some(format!("use a plugin that exports the `{world}` world")),
                });
            }
            Err(e) => diagnostics.push(Diagnostic {
                message: format!("{what}: `{reference}` cannot be loaded: {e}"),
                at: at.cloned(),
                help: None,
            }),
        }
    };
    for artifact in &loaded.plan.artifacts {
        let at = loaded.locations.artifacts.get(&artifact.alias);
        let what = format!("the source of artifact `{}`", artifact.alias);
        check(&artifact.source, World::ArtifactSource, at, what);
    }
    for stage in &loaded.plan.stages {
        for (index, task) in stage.tasks.iter().enumerate() {
            let at = loaded.locations.tasks.get(&(stage.name.clone(), index));
            check(
                &task.plugin,
                World::Task,
                at,
                format!("the plugin of task `{}`", task.name),
            );
        }
        for gate in [&stage.pre_gates, &stage.post_gates]
            .into_iter()
            .flatten()
            .flat_map(|g| &g.gates)
        {
            let at = loaded
                .locations
                .gates
                .get(&(stage.name.clone(), gate.name.clone()));
            let what = format!(
                "the plugin of gate `{}` (stage `{}`)",
                gate.name, stage.name
            );
            check(&gate.plugin, World::Gate, at, what);
        }
    }
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(PipelineError { diagnostics })
    }
}

/// Checks that every stage's `pool` is one of `known` (the service's `[[pools]]`): a job for a
/// pool no agent can join would wait forever.
pub fn check_pools(loaded: &Loaded, known: &[String]) -> Result<(), PipelineError> {
    let diagnostics: Vec<Diagnostic> = (loaded.plan.stages.iter())
        .filter_map(|stage| {
            let pool = stage.pool.as_ref().filter(|p| !known.contains(p))?;
            let listed = if known.is_empty() {
                "the service declares no pools".to_owned()
            } else {
                format!("its pools are: {}", known.join(", "))
            };
            Some(Diagnostic {
                message: format!(
                    "stage `{}` runs on pool `{pool}`, which the service does not know",
                    stage.name
                ),
                at: loaded.locations.pools.get(&stage.name).cloned(),
                help: Some(format!(
                    "{listed}; declare it under [[pools]] in sluice.toml, or remove `pool` to run the stage on the server"
                )),
            })
        })
        .collect();
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(PipelineError { diagnostics })
    }
}
