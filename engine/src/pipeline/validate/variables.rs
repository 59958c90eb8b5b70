//! Variables (the pipeline's and a stage's; only the pipeline's may be `settable`, never a
//! secret), the `$(name)` references that must name one in scope, and grant host paths that
//! must not name a settable one.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use super::{BUILTIN_VARIABLES, HOST_PATH_VARIABLES, Validator};
use crate::pipeline::plan::*;
use crate::pipeline::schema::*;

impl Validator<'_> {
    /// The pipeline's variables (`stage` is `None`) or a stage's.
    pub(super) fn variables(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<RawVariable>>,
        stage: Option<&str>,
    ) -> Vec<VariableSpec> {
        let mut out = Vec::new();
        for (name, value) in raw {
            self.check_name("variable name", name);
            let (source, secret, settable) = match value.get_ref() {
                RawVariable::Plain(text) => (ValueSource::Literal(text.clone()), false, false),
                RawVariable::Table(t) => {
                    let sources = [
                        t.value.is_some(),
                        t.from_env.is_some(),
                        t.from_file.is_some(),
                    ];
                    if sources.iter().filter(|s| **s).count() != 1 {
                        self.error(
                            Some(value.span()),
                            format!("variable `{}` needs exactly one of `value`, `from-env` and `from-file`", name.get_ref()),
                            None,
                        );
                    }
                    if t.secret && t.value.is_some() {
                        self.error(
                            Some(value.span()),
                            format!("secret `{}` has its value written in the pipeline", name.get_ref()),
                            Some("take secrets from the environment (`from-env = \"NAME\"`) or a file (`from-file = \"/path\"`)"),
                        );
                    }
                    if t.settable && t.secret {
                        self.error(
                            Some(value.span()),
                            format!("secret `{}` cannot be settable at release time", name.get_ref()),
                            Some("a release request would carry its value in clear: drop `settable`, or make it a variable that is not secret"),
                        );
                    }
                    if let (true, Some(stage)) = (t.settable, stage) {
                        self.error(
                            Some(value.span()),
                            format!("variable `{}` of stage `{stage}` cannot be settable at release time", name.get_ref()),
                            Some("declare it settable under the pipeline's `[variables]`: a stage's variables override release-time values"),
                        );
                    }
                    let source = if let Some(v) = &t.value {
                        ValueSource::Literal(v.clone())
                    } else if let Some(env) = &t.from_env {
                        ValueSource::Env(env.clone())
                    } else {
                        let file = t.from_file.clone().unwrap_or_default();
                        ValueSource::File(self.dir.join(file).display().to_string())
                    };
                    (source, t.secret, t.settable && !t.secret && stage.is_none())
                }
            };
            out.push(VariableSpec {
                name: name.get_ref().clone(),
                value: source,
                secret,
                settable,
            });
        }
        out
    }

    /// Every `$(name)` in task and gate configurations and grants must name a variable in
    /// scope: the pipeline's, the stage's, a built-in, or an output `$(task.name)` of an
    /// earlier task (for pre-deployment gates, of the stages this one waits on; for post-
    /// deployment gates, of this stage too). And no configuration is handed a host path.
    pub(super) fn check_references(&mut self, plan: &Plan, raw: &RawPipeline) {
        let pipeline_vars: BTreeSet<&str> =
            plan.variables.iter().map(|v| v.name.as_str()).collect();
        let mut earlier_tasks: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for stage in &plan.stages {
            // Tasks of the stages this one waits on, transitively, and earlier in the stage.
            let mut visible: BTreeSet<&str> = BTreeSet::new();
            if let Trigger::AfterStages { stages, .. } = &stage.trigger {
                for upstream in stages {
                    if let Some(tasks) = earlier_tasks.get(upstream.as_str()) {
                        visible.extend(tasks.iter().copied());
                    }
                }
            }
            let mut scope = CallScope {
                pipeline: &pipeline_vars,
                stage: stage.variables.iter().map(|v| v.name.as_str()).collect(),
                tasks: visible,
            };
            let raw_stage = raw.stages.iter().find(|s| s.name.get_ref() == &stage.name);
            let gate_span = |gates: Option<&RawGates>, index: usize| {
                let gate = gates.and_then(|g| g.gates.get(index))?;
                Some(
                    gate.config
                        .as_ref()
                        .map_or_else(|| gate.plugin.span(), Spanned::span),
                )
            };
            for (index, gate) in stage
                .pre_gates
                .iter()
                .flat_map(|g| g.gates.iter().enumerate())
            {
                let span = gate_span(raw_stage.and_then(|s| s.pre_gates.as_ref()), index);
                let call = format!("gate `{}`", gate.name);
                self.check_call(&call, &gate.config, &gate.grants, span, &scope);
            }
            for (index, task) in stage.tasks.iter().enumerate() {
                let span = raw_stage.and_then(|s| s.tasks.get(index)).map(|t| {
                    t.config
                        .as_ref()
                        .map_or_else(|| t.plugin.span(), Spanned::span)
                });
                let call = format!("task `{}`", task.name);
                self.check_call(&call, &task.config, &task.grants, span, &scope);
                scope.tasks.insert(task.name.as_str());
            }
            for (index, gate) in stage
                .post_gates
                .iter()
                .flat_map(|g| g.gates.iter().enumerate())
            {
                let span = gate_span(raw_stage.and_then(|s| s.post_gates.as_ref()), index);
                let call = format!("gate `{}`", gate.name);
                self.check_call(&call, &gate.config, &gate.grants, span, &scope);
            }
            earlier_tasks.insert(stage.name.as_str(), scope.tasks);
        }
    }

    /// The references of one task's or gate's (`call`) configuration and directory grants.
    fn check_call(
        &mut self,
        call: &str,
        config: &serde_json::Value,
        grants: &GrantSpec,
        span: Option<std::ops::Range<usize>>,
        scope: &CallScope<'_>,
    ) {
        let mut texts = Vec::new();
        collect_strings(config, &mut texts);
        for reference in texts.iter().flat_map(|text| references(text)) {
            if HOST_PATH_VARIABLES.contains(&reference) {
                self.error(
                    span.clone(),
                    format!(
                        "{call} is handed `$({reference})`, a path on the engine's host: a \
                         task sees only its sandbox"
                    ),
                    Some("grant the directory (`grants.dirs`, whose `host` may use it) and give the task its `guest` path; the workspace is `/workspace`"),
                );
            }
        }
        texts.extend(
            grants
                .dirs
                .iter()
                .flat_map(|d| [d.host.clone(), d.guest.clone()]),
        );
        for text in texts {
            for reference in references(&text) {
                if !scope.knows(reference) {
                    self.error(
                        span.clone(),
                        format!("unknown variable `$({reference})` in {call}"),
                        Some("declare it under `[variables]` or the stage's `variables`, or read an earlier task's output as `$(task-name.output)`"),
                    );
                }
            }
        }
    }
}

/// The variables a call can name: the pipeline's, its stage's, and the outputs of the tasks
/// before it.
struct CallScope<'a> {
    pipeline: &'a BTreeSet<&'a str>,
    stage: BTreeSet<&'a str>,
    tasks: BTreeSet<&'a str>,
}

impl CallScope<'_> {
    fn knows(&self, reference: &str) -> bool {
        self.pipeline.contains(reference)
            || self.stage.contains(reference)
            || BUILTIN_VARIABLES.contains(&reference)
            || reference
                .split_once('.')
                .is_some_and(|(task, _)| self.tasks.contains(task))
    }
}

impl Validator<'_> {
    /// A grant's host path comes from the pipeline alone: no `$(name)` in it may name a
    /// variable a release request can set (tasks' and gates' directory grants).
    pub(super) fn check_grant_hosts(&mut self, plan: &Plan, raw: &RawPipeline) {
        let settable = plan.settable();
        if settable.is_empty() {
            return;
        }
        let mut found = Vec::new();
        for stage in &raw.stages {
            let gates = [&stage.pre_gates, &stage.post_gates]
                .into_iter()
                .flatten()
                .flat_map(|g| &g.gates)
                .map(|g| &g.grants);
            for grants in stage.tasks.iter().map(|t| &t.grants).chain(gates) {
                for dir in &grants.dirs {
                    for reference in references(&dir.get_ref().host) {
                        if settable.contains(&reference) {
                            found.push((
                                dir.span(),
                                dir.get_ref().host.clone(),
                                reference.to_owned(),
                            ));
                        }
                    }
                }
            }
        }
        for (span, host, reference) in found {
            self.error(
                Some(span),
                format!("directory grant `{host}` uses `$({reference})`, which is settable at release time"),
                Some("a grant's host path comes from the pipeline alone: use a variable that is not settable, or a built-in such as `$(sluice.pipeline-dir)`"),
            );
        }
    }
}

/// The `$(name)` references in `text`.
pub fn references(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

pub(super) fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}
