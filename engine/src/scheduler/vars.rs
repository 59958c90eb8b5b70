//! The variables a task sees and `$(name)` substitution. Scope, later entries winning:
//! built-ins, pipeline variables, release-time variables, stage variables, then the outputs of
//! tasks that already ran in this release (as `task.output`). Release-time variables are only
//! those the plan declares settable (a release stored before that rule keeps none), and grants
//! are resolved without them: a grant comes from the plan alone. Secrets are read from the
//! environment or a file only now, when a task needs them, and are never stored.

use std::collections::BTreeMap;
use std::path::Path;

use crate::core::{Release, TaskState};
use crate::pipeline::{ValueSource, VariableSpec};
use crate::types::Variable;

/// Variables in scope for one task.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scope {
    values: BTreeMap<String, Variable>,
    /// The same scope without release-time variables: what grants are resolved from.
    plan: BTreeMap<String, Variable>,
}

impl Scope {
    pub(crate) fn for_task(
        release: &Release,
        stage: usize,
        attempt: u32,
        data_dir: &Path,
        workspace: &Path,
    ) -> Result<Self, String> {
        let mut scope = Self::default();
        let spec = &release.plan.stages[stage];
        for (name, value) in [
            ("sluice.pipeline", release.pipeline.clone()),
            ("sluice.pipeline-dir", release.plan.dir.clone()),
            ("sluice.data-dir", data_dir.display().to_string()),
            ("sluice.release", release.name.clone()),
            ("sluice.release-number", release.number.to_string()),
            ("sluice.stage", spec.name.clone()),
            ("sluice.attempt", attempt.to_string()),
            ("sluice.workspace", workspace.display().to_string()),
        ] {
            scope.set(name, value, false);
        }
        scope.declare(&release.plan.variables)?;
        for (name, value) in &release.variables {
            if release.plan.settable_at_release(name).is_ok() {
                let variable = variable(name, value.clone(), false);
                scope.values.insert(name.clone(), variable);
            }
        }
        scope.declare(&spec.variables)?;
        for run in &release.stages {
            let Some(attempt) = run.attempts.last() else {
                continue;
            };
            for task in &attempt.tasks {
                if matches!(
                    task.state,
                    TaskState::Succeeded | TaskState::SucceededWithIssues
                ) {
                    for output in &task.outputs {
                        scope.set(
                            &format!("{}.{}", task.name, output.name),
                            output.value.clone(),
                            output.secret,
                        );
                    }
                }
            }
        }
        Ok(scope)
    }

    /// Sets a variable of the plan (or a built-in, or an output): for tasks and grants alike.
    fn set(&mut self, name: &str, value: String, secret: bool) {
        let variable = variable(name, value, secret);
        self.plan.insert(name.to_owned(), variable.clone());
        self.values.insert(name.to_owned(), variable);
    }

    fn declare(&mut self, specs: &[VariableSpec]) -> Result<(), String> {
        for spec in specs {
            let value = match &spec.value {
                ValueSource::Literal(v) => v.clone(),
                ValueSource::Env(name) => std::env::var(name).map_err(|_| {
                    format!("variable `{}` comes from the environment variable {name}, which is not set", spec.name)
                })?,
                ValueSource::File(path) => std::fs::read_to_string(path)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                    .map_err(|e| format!("variable `{}` comes from {path}, which cannot be read: {e}", spec.name))?,
            };
            self.set(&spec.name, value, spec.secret);
        }
        Ok(())
    }

    /// Replaces every `$(name)` in `text`; unknown names are an error.
    pub(crate) fn substitute(&self, text: &str) -> Result<String, String> {
        substitute(&self.values, text)
    }

    /// Replaces every `$(name)` in a grant's `text` from the plan alone: release-time
    /// variables never reach a grant.
    pub(crate) fn substitute_grant(&self, text: &str) -> Result<String, String> {
        substitute(&self.plan, text)
    }

    /// Substitutes inside every string of a JSON value.
    pub(crate) fn substitute_json(
        &self,
        value: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        Ok(match value {
            Value::String(s) => Value::String(self.substitute(s)?),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.substitute_json(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.substitute_json(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    /// The variables to hand the plugin.
    pub(crate) fn variables(&self) -> Vec<Variable> {
        self.values.values().cloned().collect()
    }

    /// Secret values, to mask in logs.
    pub(crate) fn secrets(&self) -> Vec<String> {
        self.values
            .values()
            .filter(|v| v.secret)
            .map(|v| v.value.clone())
            .collect()
    }
}

fn variable(name: &str, value: String, secret: bool) -> Variable {
    Variable {
        name: name.to_owned(),
        value,
        secret,
    }
}

/// Replaces every `$(name)` in `text` from `values`; unknown names are an error.
fn substitute(values: &BTreeMap<String, Variable>, text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = values
            .get(name)
            .ok_or_else(|| format!("`$({name})` is not set (did the task that outputs it run?)"))?;
        out.push_str(&value.value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::Scope;
    use crate::core::{NewRelease, Release};

    const PIPELINE: &str = r#"
version = 1
[variables]
title = { value = "Space Game", settable = true }
dir = "sites"
region = "eu"
[[stages]]
name = "dev"
"#;

    #[test]
    fn release_time_values_reach_tasks_never_grants() {
        let mut plan = crate::pipeline::parse("p.toml", PIPELINE, Path::new("/p"), "p")
            .unwrap()
            .plan;
        // As if validation had let a grant's variable be settable.
        plan.variables
            .iter_mut()
            .find(|v| v.name == "dir")
            .unwrap()
            .settable = true;
        let variables = [
            ("sluice.data-dir", "/evil"),
            ("title", "Moon Base"),
            ("dir", "/evil"),
            ("region", "us"),
        ];
        let release = Release::new(NewRelease {
            plan,
            number: 1,
            creator: "mallory".into(),
            description: None,
            artifacts: vec![],
            variables: variables
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            digests: vec![],
            created_at: 0,
        });
        let scope = Scope::for_task(&release, 0, 1, Path::new("/data"), Path::new("/ws")).unwrap();
        let task = |text: &str| scope.substitute(text).unwrap();
        let grant = |text: &str| scope.substitute_grant(text).unwrap();
        assert_eq!(
            task("$(sluice.data-dir)"),
            "/data",
            "`sluice.*` is never set"
        );
        assert_eq!(task("$(region)"), "eu", "not settable: the plan's value");
        assert_eq!(task("$(title)"), "Moon Base");
        assert_eq!(task("$(dir)"), "/evil");
        assert_eq!(grant("$(title)"), "Space Game");
        assert_eq!(grant("$(sluice.data-dir)/$(dir)"), "/data/sites");
        assert!(
            scope
                .variables()
                .iter()
                .all(|v| v.name != "sluice.data-dir" || v.value == "/data")
        );
    }
}
