//! The variables a task sees and `$(name)` substitution. Scope, later entries winning:
//! built-ins (for a task, paths as its sandbox has them: `$(sluice.workspace)` is
//! `/workspace`; the host paths `$(sluice.pipeline-dir)`, `$(sluice.data-dir)` and the
//! workspace's are for grants alone), pipeline variables, release-time variables, stage variables, then the outputs of
//! tasks that already ran in this release (as `task.output`). Release-time variables are only
//! those the plan declares settable (a release stored before that rule keeps none), and grants
//! are resolved without them: a grant comes from the plan alone. Secrets are read from the
//! environment or a file only now, when a task needs them, and are never stored; secret
//! outputs are stored sealed and opened here, with the engine's key (a value that does not
//! open is the task's failure, never a silent `***`). The engine's own key is never a
//! variable's source.

use std::collections::BTreeMap;
use std::path::Path;

use crate::core::{Release, TaskState};
use crate::pipeline::{Plan, ValueSource, VariableSpec};
use crate::secrets::{KEY_ENV, Keyring, Place};
use crate::types::Variable;

/// Where a task's workspace is in its sandbox.
pub(crate) const WORKSPACE: &str = "/workspace";

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
        keys: &Keyring,
    ) -> Result<Self, String> {
        let mut scope = Self::default();
        let spec = &release.plan.stages[stage];
        for (name, value) in [
            ("sluice.pipeline", release.pipeline.clone()),
            ("sluice.release", release.name.clone()),
            ("sluice.release-number", release.number.to_string()),
            ("sluice.stage", spec.name.clone()),
            ("sluice.attempt", attempt.to_string()),
        ] {
            scope.set(name, value, false);
        }
        // Host paths are for grants alone: a task sees the paths of its sandbox (its
        // workspace at `/workspace`), never where they are on the host.
        for (name, value) in [
            ("sluice.pipeline-dir", release.plan.dir.clone()),
            ("sluice.data-dir", data_dir.display().to_string()),
            ("sluice.workspace", workspace.display().to_string()),
        ] {
            scope
                .plan
                .insert(name.to_owned(), variable(name, value, false));
        }
        let guest = variable("sluice.workspace", WORKSPACE.to_owned(), false);
        scope.values.insert(guest.name.clone(), guest);
        scope.declare(&release.plan.variables, keys)?;
        for (name, value) in &release.variables {
            if release.plan.settable_at_release(name).is_ok() {
                let variable = variable(name, value.clone(), false);
                scope.values.insert(name.clone(), variable);
            }
        }
        scope.declare(&spec.variables, keys)?;
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
                        // Stored before outputs were sealed: a secret output kept only `***`.
                        let value = match &output.sealed {
                            None => output.value.clone(),
                            Some(sealed) => {
                                let place = Place {
                                    release: &release.name,
                                    stage: &run.name,
                                    attempt: attempt.number,
                                    task: &task.name,
                                    output: &output.name,
                                };
                                keys.open(&place, sealed).map_err(|e| e.to_string())?
                            }
                        };
                        let secret = output.secret || output.sealed.is_some();
                        let name = format!("{}.{}", task.name, output.name);
                        scope.set(&name, value, secret);
                    }
                }
            }
        }
        Ok(scope)
    }

    /// Variables in scope for an artifact source whose configuration is `config`:
    /// `$(sluice.pipeline)` and the pipeline's own variables that `config` names, secrets read
    /// now. A source lists versions before any release exists, so no release-time value, stage
    /// variable or output is in scope (validation refuses them).
    pub(crate) fn for_source(
        plan: &Plan,
        config: &serde_json::Value,
        keys: &Keyring,
    ) -> Result<Self, String> {
        let mut scope = Self::default();
        scope.set("sluice.pipeline", plan.name.clone(), false);
        let named = config.to_string();
        let used: Vec<VariableSpec> = plan
            .variables
            .iter()
            .filter(|v| !v.settable && named.contains(&format!("$({})", v.name)))
            .cloned()
            .collect();
        scope.declare(&used, keys)?;
        Ok(scope)
    }

    /// Sets a variable of the plan (or a built-in, or an output): for tasks and grants alike.
    fn set(&mut self, name: &str, value: String, secret: bool) {
        let variable = variable(name, value, secret);
        self.plan.insert(name.to_owned(), variable.clone());
        self.values.insert(name.to_owned(), variable);
    }

    fn declare(&mut self, specs: &[VariableSpec], keys: &Keyring) -> Result<(), String> {
        for spec in specs {
            refuse_key_source(&spec.name, &spec.value, keys)?;
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

    /// Secret values, to mask in logs (an empty one hides nothing, and is left out).
    pub(crate) fn secrets(&self) -> Vec<String> {
        self.values
            .values()
            .filter(|v| v.secret && !v.value.is_empty())
            .map(|v| v.value.clone())
            .collect()
    }
}

/// The engine's secret key opens every sealed output of every release: no variable reads it,
/// from the environment or from its file.
fn refuse_key_source(name: &str, source: &ValueSource, keys: &Keyring) -> Result<(), String> {
    let refused = |from: &str| {
        Err(format!(
            "variable `{name}` comes from {from}, the engine's secret key, which is never given \
             to a task: take the value from elsewhere"
        ))
    };
    match source {
        ValueSource::Env(env) if env == KEY_ENV => refused(KEY_ENV),
        ValueSource::File(path) => {
            use std::os::unix::fs::MetadataExt;
            // The same file under any name: a symlink, a hard link, `..` in the path.
            let same = match (std::fs::metadata(path), std::fs::metadata(keys.file())) {
                (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
                _ => Path::new(path) == keys.file(),
            };
            if same { refused(path) } else { Ok(()) }
        }
        _ => Ok(()),
    }
}

fn variable(name: &str, value: String, secret: bool) -> Variable {
    Variable {
        name: name.to_owned(),
        value,
        secret,
        sealed: None,
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
    use crate::core::{Event, NewRelease, Release, TaskOutcome};
    use crate::secrets::{Keyring, Place};
    use crate::types::Variable;

    /// A release of `[[stages]] dev` with tasks `mint` and `use` whose `mint` returned `outputs`.
    fn minted(outputs: Vec<Variable>) -> Release {
        let pipeline = "version = 1\n[[stages]]\nname = \"dev\"\n\
                        [[stages.tasks]]\nname = \"mint\"\nplugin = \"copy\"\n\
                        [[stages.tasks]]\nname = \"use\"\nplugin = \"copy\"\n";
        let plan = crate::pipeline::parse("p.toml", pipeline, Path::new("/p"), "p")
            .unwrap()
            .plan;
        let mut release = Release::new(NewRelease {
            plan,
            number: 1,
            creator: "rita".into(),
            description: None,
            artifacts: vec![],
            variables: vec![],
            digests: vec![],
            created_at: 0,
        });
        let (stage, attempt) = ("dev".to_owned(), 1);
        let warnings = vec![];
        for event in [
            Event::Created,
            Event::Prepared {
                stage: stage.clone(),
                attempt,
            },
            Event::TaskFinished {
                stage,
                attempt,
                task: 0,
                outcome: TaskOutcome::Succeeded { warnings, outputs },
            },
        ] {
            crate::core::apply(&mut release, event, 0).unwrap();
        }
        release
    }

    fn token(value: &str) -> Variable {
        Variable {
            name: "token".into(),
            value: value.into(),
            secret: true,
            sealed: None,
        }
    }

    const KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

    #[test]
    fn a_sealed_output_reaches_later_tasks_in_clear_and_masked() {
        let keys = Keyring::new(Path::new("/data"), Some(KEY.into()));
        let mut outputs = vec![token("tok-77aa")];
        keys.seal_outputs("p-1", "dev", 1, "mint", &mut outputs)
            .unwrap();
        assert_eq!(outputs[0].value, "***", "never stored in clear");
        let release = minted(outputs);
        let scope =
            Scope::for_task(&release, 0, 1, Path::new("/data"), Path::new("/ws"), &keys).unwrap();
        assert_eq!(scope.substitute("$(mint.token)").unwrap(), "tok-77aa");
        assert!(scope.secrets().contains(&"tok-77aa".to_owned()));
        let given = scope.variables();
        let given = given.iter().find(|v| v.name == "mint.token").unwrap();
        assert!(given.secret && given.sealed.is_none() && given.value == "tok-77aa");
    }

    #[test]
    fn a_sealed_output_that_does_not_open_fails_the_scope_and_old_ones_stay_masked() {
        let keys = Keyring::new(Path::new("/data"), Some(KEY.into()));
        // Sealed for another release: copied into this one, it does not open.
        let elsewhere = Place {
            release: "p-2",
            stage: "dev",
            attempt: 1,
            task: "mint",
            output: "token",
        };
        let mut copied = token("***");
        copied.sealed = Some(keys.seal(&elsewhere, "tok-77aa").unwrap());
        let release = minted(vec![copied]);
        let err =
            Scope::for_task(&release, 0, 1, Path::new("/d"), Path::new("/w"), &keys).unwrap_err();
        assert!(
            err.starts_with(
                "secret output `mint.token` of release p-1 (stage dev, attempt 1) \
                             cannot be decrypted: its stored value was altered or copied"
            ),
            "{err}"
        );
        assert!(!err.contains("tok-77aa"), "{err}");

        // Stored before outputs were sealed (no `sealed` in the record): `***`, still secret.
        let old: Variable =
            serde_json::from_str(r#"{"name":"token","value":"***","secret":true}"#).unwrap();
        let scope = Scope::for_task(
            &minted(vec![old]),
            0,
            1,
            Path::new("/d"),
            Path::new("/w"),
            &keys,
        )
        .unwrap();
        let given = scope.variables();
        let given = given.iter().find(|v| v.name == "mint.token").unwrap();
        assert!(given.secret && given.value == "***");
    }

    #[test]
    fn an_empty_secret_masks_nothing() {
        let keys = Keyring::new(Path::new("/data"), Some(KEY.into()));
        let scope = Scope::for_task(
            &minted(vec![token("")]),
            0,
            1,
            Path::new("/d"),
            Path::new("/w"),
            &keys,
        )
        .unwrap();
        assert!(scope.secrets().is_empty());
    }

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
        let keys = Keyring::new(Path::new("/data"), None);
        let scope =
            Scope::for_task(&release, 0, 1, Path::new("/data"), Path::new("/ws"), &keys).unwrap();
        let task = |text: &str| scope.substitute(text).unwrap();
        let grant = |text: &str| scope.substitute_grant(text).unwrap();
        assert!(
            scope.substitute("$(sluice.data-dir)").is_err(),
            "a task is never handed a host path"
        );
        assert_eq!(task("$(sluice.workspace)"), "/workspace");
        assert_eq!(task("$(region)"), "eu", "not settable: the plan's value");
        assert_eq!(task("$(title)"), "Moon Base");
        assert_eq!(task("$(dir)"), "/evil");
        assert_eq!(grant("$(title)"), "Space Game");
        assert_eq!(
            grant("$(sluice.data-dir)/$(dir)"),
            "/data/sites",
            "`sluice.*` is never set"
        );
        assert_eq!(grant("$(sluice.workspace)/out"), "/ws/out");
        let handed = scope.variables();
        assert!(
            handed.iter().all(|v| !v.value.starts_with("/data")
                && !v.value.starts_with("/ws")
                && !v.value.starts_with("/p")),
            "no host path among the task's variables: {handed:?}"
        );
    }
}
