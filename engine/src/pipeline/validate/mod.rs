//! From the file as written to a [`Plan`]: every rule checked, every problem reported with its
//! place and a fix, nothing half-resolved left for the scheduler.
//!
//! This file holds the [`Validator`] and the pipeline as a whole; each section of the schema has
//! its own file: variables (and `$(name)` references), artifacts, plugin references and
//! task/gate names, grants and limits, stages (their tasks and order), approvals, gates,
//! triggers (and cron schedules), freezes.

mod approvals;
mod artifacts;
mod freezes;
mod gates;
mod grants;
mod plugins;
mod stages;
mod triggers;
mod variables;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{Diagnostic, Location};
use super::plan::*;
use super::schema::*;
use crate::types::{Name, NameError, parse_duration};

pub use variables::references;

/// Built-ins that are host paths: a grant's `host` may use them, a task's or gate's config
/// may not (a plugin sees its sandbox's paths, never the host's).
pub const HOST_PATH_VARIABLES: &[&str] = &["sluice.pipeline-dir", "sluice.data-dir"];

/// Built-in variables (for a task, `sluice.workspace` is `/workspace`; see
/// [`HOST_PATH_VARIABLES`] for those only grants may use).
pub const BUILTIN_VARIABLES: &[&str] = &[
    "sluice.pipeline",
    "sluice.pipeline-dir",
    "sluice.data-dir",
    "sluice.release",
    "sluice.release-number",
    "sluice.stage",
    "sluice.attempt",
    "sluice.workspace",
];

/// Where things are in the file, for errors found after planning (plugin checks).
#[derive(Debug, Default, Clone)]
pub struct Locations {
    /// Artifact alias -> its `source`.
    pub artifacts: HashMap<String, Location>,
    /// (stage, task index) -> the task's `plugin`.
    pub tasks: HashMap<(String, usize), Location>,
    /// (stage, gate name) -> the gate's `plugin`.
    pub gates: HashMap<(String, String), Location>,
    /// Stage -> its `pool`.
    pub pools: HashMap<String, Location>,
}

pub(crate) struct Validator<'a> {
    file: &'a str,
    source: &'a str,
    dir: &'a Path,
    pub(crate) diagnostics: Vec<Diagnostic>,
    pub(crate) locations: Locations,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(file: &'a str, source: &'a str, dir: &'a Path) -> Self {
        Self {
            file,
            source,
            dir,
            diagnostics: Vec::new(),
            locations: Locations::default(),
        }
    }

    pub(crate) fn location(&self, span: Range<usize>) -> Location {
        Location::at(self.file, self.source, span.start)
    }

    pub(crate) fn error(
        &mut self,
        span: Option<Range<usize>>,
        message: String,
        help: Option<&str>,
    ) {
        // A problem of the whole file (no stages; a TOML error without a span) is placed at
        // its start: every diagnostic names its place.
        let at = Some(self.location(span.unwrap_or(0..0)));
        self.diagnostics.push(Diagnostic {
            message,
            at,
            help: help.map(str::to_owned),
        });
    }

    /// Reports `name` (a `what`, e.g. "stage name") unless it is a [`Name`]: the one rule of
    /// every name in a pipeline.
    pub(crate) fn check_name(&mut self, what: &str, name: &Spanned<String>) {
        if let Err(e) = Name::new(name.get_ref()) {
            self.name_error(Some(name.span()), what, &e);
        }
    }

    fn name_error(&mut self, span: Option<Range<usize>>, what: &str, e: &NameError) {
        let message = if e.is_too_long() {
            format!("invalid {what} `{}`: {}", e.shown(), e.problem())
        } else {
            format!("invalid {what} `{}`", e.shown())
        };
        self.error(span, message, Some(&e.help()));
    }

    /// The pipeline's name: its `name`, else `default_name` (the file's stem, its folder's
    /// name, or the name it was sent as), checked as a pipeline's [`Name`] either way — a name
    /// becomes a file name, a workspace directory, a release id and a part of approval ids.
    fn pipeline_name(&mut self, written: Option<&Spanned<String>>, default_name: &str) -> String {
        match written {
            Some(name) => {
                if let Err(e) = Name::pipeline(name.get_ref()) {
                    self.name_error(Some(name.span()), "pipeline name", &e);
                }
                name.get_ref().clone()
            }
            None => {
                if let Err(e) = Name::pipeline(default_name) {
                    let message = format!(
                        "the pipeline has no `name`, and the name it would take from its file, \
                         `{}`, is invalid ({})",
                        e.shown(),
                        e.problem()
                    );
                    let help = format!("add `name = \"...\"`: {}", e.help());
                    self.error(Some(0..0), message, Some(&help));
                }
                default_name.to_owned()
            }
        }
    }

    /// Checks everything and builds the plan (meaningful only if no diagnostics were added).
    pub(crate) fn plan(&mut self, raw: RawPipeline, default_name: &str) -> Plan {
        if *raw.version.get_ref() != 1 {
            self.error(
                Some(raw.version.span()),
                format!("unsupported pipeline version {}", raw.version.get_ref()),
                Some("this Sluice reads `version = 1`"),
            );
        }
        let name = self.pipeline_name(raw.name.as_ref(), default_name);
        if raw.stages.is_empty() {
            self.error(
                None,
                "the pipeline has no stages".into(),
                Some("add at least one `[[stages]]` table"),
            );
        }

        let variables = self.variables(&raw.variables, None);
        let artifacts = raw
            .artifacts
            .iter()
            .map(|(alias, artifact)| self.artifact(alias, artifact, &variables))
            .collect();

        // Stage names first: `after` may point forward.
        let mut stage_names: BTreeMap<String, Range<usize>> = BTreeMap::new();
        for stage in &raw.stages {
            self.check_name("stage name", &stage.name);
            let name = stage.name.get_ref();
            if stage_names
                .insert(name.clone(), stage.name.span())
                .is_some()
            {
                self.error(
                    Some(stage.name.span()),
                    format!("duplicate stage name `{name}`"),
                    Some("every stage needs its own name"),
                );
            }
        }

        let mut task_names: BTreeSet<String> = BTreeSet::new();
        let mut stages: Vec<StageSpec> = Vec::new();
        let mut spans: HashMap<String, Range<usize>> = HashMap::new();
        for stage in &raw.stages {
            let spec = self.stage(stage, &stage_names, &mut task_names);
            spans.insert(spec.name.clone(), stage.name.span());
            stages.push(spec);
        }
        let stages = self.topological(stages, &spans);

        let triggers = raw
            .triggers
            .as_ref()
            .map(|t| self.triggers(t, &raw))
            .unwrap_or_default();
        let plan = Plan {
            name,
            description: raw.description.clone(),
            dir: self.dir.display().to_string(),
            variables,
            artifacts,
            freezes: raw
                .freezes
                .iter()
                .filter_map(|f| self.freeze(f, &stage_names))
                .collect(),
            stages,
            triggers,
        };
        self.check_references(&plan, &raw);
        self.check_grant_hosts(&plan, &raw);
        plan
    }

    fn duration(&mut self, text: &Spanned<String>, what: &str) -> Option<Duration> {
        match parse_duration(text.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(Some(text.span()), format!("{what}: {e}"), None);
                None
            }
        }
    }
}

fn toml_to_json(table: &toml::Table) -> serde_json::Value {
    serde_json::to_value(table).unwrap_or(serde_json::Value::Null)
}
