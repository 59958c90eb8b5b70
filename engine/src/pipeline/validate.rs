//! From the file as written to a [`Plan`]: every rule checked, every problem reported with its
//! place and a fix, nothing half-resolved left for the scheduler.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{Diagnostic, Location};
use super::plan::*;
use super::schema::*;
use crate::builtin::builtin;
use crate::types::{Access, Limits};
use crate::types::{parse_bytes, parse_duration};

/// Built-in variables every task may reference.
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
}

pub(crate) struct Validator<'a> {
    file: &'a str,
    source: &'a str,
    dir: &'a Path,
    pub(crate) diagnostics: Vec<Diagnostic>,
    pub(crate) locations: Locations,
}

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

const NAME_HELP: &str =
    "names use lowercase letters, digits, `-` and `_`, and start with a letter or digit";

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
        let at = span.map(|s| self.location(s));
        self.diagnostics.push(Diagnostic {
            message,
            at,
            help: help.map(str::to_owned),
        });
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
        let name = match &raw.name {
            Some(name) => {
                if !is_name(name.get_ref()) {
                    self.error(
                        Some(name.span()),
                        format!("invalid pipeline name `{}`", name.get_ref()),
                        Some(NAME_HELP),
                    );
                }
                name.get_ref().clone()
            }
            None => default_name.to_owned(),
        };
        if raw.stages.is_empty() {
            self.error(
                None,
                "the pipeline has no stages".into(),
                Some("add at least one `[[stages]]` table"),
            );
        }

        let variables = self.variables(&raw.variables);
        let artifacts = raw
            .artifacts
            .iter()
            .map(|(alias, artifact)| self.artifact(alias, artifact))
            .collect();

        // Stage names first: `after` may point forward.
        let mut stage_names: BTreeMap<String, Range<usize>> = BTreeMap::new();
        for stage in &raw.stages {
            let name = stage.name.get_ref();
            if !is_name(name) {
                self.error(
                    Some(stage.name.span()),
                    format!("invalid stage name `{name}`"),
                    Some(NAME_HELP),
                );
            }
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
        plan
    }

    fn variables(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<RawVariable>>,
    ) -> Vec<VariableSpec> {
        let mut out = Vec::new();
        for (name, value) in raw {
            if !is_name(name.get_ref()) {
                self.error(
                    Some(name.span()),
                    format!("invalid variable name `{}`", name.get_ref()),
                    Some(NAME_HELP),
                );
            }
            let (source, secret) = match value.get_ref() {
                RawVariable::Plain(text) => (ValueSource::Literal(text.clone()), false),
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
                    let source = if let Some(v) = &t.value {
                        ValueSource::Literal(v.clone())
                    } else if let Some(env) = &t.from_env {
                        ValueSource::Env(env.clone())
                    } else {
                        let file = t.from_file.clone().unwrap_or_default();
                        ValueSource::File(self.dir.join(file).display().to_string())
                    };
                    (source, t.secret)
                }
            };
            out.push(VariableSpec {
                name: name.get_ref().clone(),
                value: source,
                secret,
            });
        }
        out
    }

    /// A plugin reference: a built-in name, a path (relative to the pipeline), or a name found
    /// as `plugins/NAME.wasm` next to the pipeline.
    fn plugin(&mut self, text: &Spanned<String>) -> String {
        let name = text.get_ref();
        if builtin(name).is_some() {
            return name.clone();
        }
        if name.contains('/') || name.ends_with(".wasm") {
            return self.dir.join(name).display().to_string();
        }
        let local = self.dir.join("plugins").join(format!("{name}.wasm"));
        if local.is_file() {
            return local.display().to_string();
        }
        self.error(
            Some(text.span()),
            format!("unknown plugin `{name}`"),
            Some(&format!(
                "use a built-in ({}), a path to a component (`./plugins/x.wasm`), or put `plugins/{name}.wasm` next to the pipeline",
                crate::builtin::BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
            )),
        );
        name.clone()
    }

    fn artifact(&mut self, alias: &Spanned<String>, raw: &RawArtifact) -> ArtifactSpec {
        if !is_name(alias.get_ref()) {
            self.error(
                Some(alias.span()),
                format!("invalid artifact alias `{}`", alias.get_ref()),
                Some(NAME_HELP),
            );
        }
        self.locations
            .artifacts
            .insert(alias.get_ref().clone(), self.location(raw.source.span()));
        let source = self.plugin(&raw.source);
        let selector = match raw.version.as_ref().map(Spanned::get_ref) {
            None => Selector::Latest,
            Some(RawSelector::Text(t)) if t == "latest" => Selector::Latest,
            Some(RawSelector::Text(t)) => Selector::Exact(t.clone()),
            Some(RawSelector::Filter(RawFilter {
                branch: Some(b),
                tag: None,
            })) => Selector::Branch(b.clone()),
            Some(RawSelector::Filter(RawFilter {
                branch: None,
                tag: Some(t),
            })) => Selector::Tag(t.clone()),
            Some(RawSelector::Filter(_)) => {
                self.error(
                    raw.version.as_ref().map(Spanned::span),
                    format!("artifact `{}`: a version filter names either a `branch` or a `tag`", alias.get_ref()),
                    Some("write `version = { branch = \"main\" }` or `version = { tag = \"stable\" }`"),
                );
                Selector::Latest
            }
        };
        let grants = self.grants(&raw.grants, None);
        ArtifactSpec {
            alias: alias.get_ref().clone(),
            source,
            config: toml_to_json(&raw.config),
            selector,
            grants,
        }
    }

    fn grants(&mut self, raw: &RawGrants, default_workspace: Option<Access>) -> GrantSpec {
        let mut dirs = Vec::new();
        for dir in &raw.dirs {
            let d = dir.get_ref();
            let access = match d.access.as_deref() {
                None | Some("ro") => Access::ReadOnly,
                Some("rw") => Access::ReadWrite,
                Some(other) => {
                    self.error(
                        Some(dir.span()),
                        format!("unknown access `{other}`"),
                        Some("use `ro` or `rw`"),
                    );
                    Access::ReadOnly
                }
            };
            let resolved = d
                .host
                .replace("$(sluice.pipeline-dir)", "/")
                .replace("$(sluice.data-dir)", "/");
            if !Path::new(&resolved).is_absolute() {
                self.error(
                    Some(dir.span()),
                    format!("directory grant `{}` is a relative path", d.host),
                    Some("grant an absolute path, or one under `$(sluice.pipeline-dir)` or `$(sluice.data-dir)`"),
                );
            }
            if !d.guest.starts_with('/') {
                self.error(
                    Some(dir.span()),
                    format!("guest path `{}` must be absolute", d.guest),
                    Some("write e.g. `guest = \"/target\"`"),
                );
            }
            dirs.push(DirSpec {
                host: d.host.clone(),
                guest: d.guest.clone(),
                access,
            });
        }
        for env in &raw.env {
            let name = env.get_ref();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.error(
                    Some(env.span()),
                    format!("invalid environment variable name `{name}`"),
                    None,
                );
            }
        }
        for host in &raw.hosts {
            if let Err(e) = crate::types::Grants::none().host(host.get_ref().clone()) {
                self.error(Some(host.span()), e.to_string(), None);
            }
        }
        let workspace = match raw
            .workspace
            .as_ref()
            .map(|w| (w.get_ref().as_str(), w.span()))
        {
            None => default_workspace,
            Some(("none", _)) => None,
            Some(("ro", _)) => Some(Access::ReadOnly),
            Some(("rw", _)) => Some(Access::ReadWrite),
            Some((other, span)) => {
                self.error(
                    Some(span),
                    format!("unknown workspace access `{other}`"),
                    Some("use `none`, `ro` or `rw`"),
                );
                default_workspace
            }
        };
        GrantSpec {
            dirs,
            env: raw.env.iter().map(|e| e.get_ref().clone()).collect(),
            hosts: raw.hosts.iter().map(|h| h.get_ref().clone()).collect(),
            workspace,
        }
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

    fn bytes(&mut self, text: &Option<Spanned<String>>, what: &str, default: u64) -> u64 {
        let Some(text) = text else { return default };
        match parse_bytes(text.get_ref()) {
            Ok(b) => b,
            Err(e) => {
                self.error(Some(text.span()), format!("{what}: {e}"), None);
                default
            }
        }
    }

    fn stage(
        &mut self,
        raw: &RawStage,
        stage_names: &BTreeMap<String, Range<usize>>,
        task_names: &mut BTreeSet<String>,
    ) -> StageSpec {
        let name = raw.name.get_ref().clone();
        let trigger = match raw.after.as_ref().map(|a| (a.get_ref(), a.span())) {
            None => Trigger::AfterRelease,
            Some((RawAfter::One(s), _)) if s == "release" => Trigger::AfterRelease,
            Some((RawAfter::One(s), _)) if s == "manual" => Trigger::Manual,
            Some((RawAfter::One(s), span)) => {
                self.after_stages(&name, std::slice::from_ref(s), span, raw, stage_names)
            }
            Some((RawAfter::Many(list), span)) => {
                self.after_stages(&name, list, span, raw, stage_names)
            }
        };
        let mut tasks = Vec::new();
        for (index, task) in raw.tasks.iter().enumerate() {
            tasks.push(self.task(&name, index, task, task_names));
        }
        let queue = match &raw.queue {
            None => QueuePolicy::Parallel(None),
            Some(q) => {
                let max = q.max_parallel.as_ref().map(|m| *m.get_ref());
                match q.policy.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
                    None | Some(("parallel", _)) => QueuePolicy::Parallel(max),
                    Some(("sequential", _)) => QueuePolicy::Sequential,
                    Some(("latest-only", _)) => QueuePolicy::LatestOnly,
                    Some((other, span)) => {
                        self.error(
                            Some(span),
                            format!("unknown queue policy `{other}`"),
                            Some("use `parallel` (with optional `max-parallel`), `sequential` or `latest-only`"),
                        );
                        QueuePolicy::Parallel(max)
                    }
                }
            }
        };
        let schedule = raw.schedule.as_ref().and_then(|raw| self.schedule(raw));
        let pre_gates = raw.pre_gates.as_ref().map(|g| self.gates(&name, g, false));
        let post_gates = raw.post_gates.as_ref().map(|g| self.gates(&name, g, true));
        StageSpec {
            name,
            trigger,
            schedule,
            variables: self.variables(&raw.variables),
            tasks,
            pre_approval: raw.pre_approval.as_ref().map(|a| self.approval(a)),
            post_approval: raw.post_approval.as_ref().map(|a| self.approval(a)),
            queue,
            pre_gates,
            post_gates,
            demands: raw.demands.clone(),
        }
    }

    fn after_stages(
        &mut self,
        stage: &str,
        list: &[String],
        span: Range<usize>,
        raw: &RawStage,
        stage_names: &BTreeMap<String, Range<usize>>,
    ) -> Trigger {
        for upstream in list {
            if upstream == stage {
                self.error(
                    Some(span.clone()),
                    format!("stage `{stage}` waits on itself"),
                    None,
                );
            } else if !stage_names.contains_key(upstream) {
                let known = stage_names.keys().cloned().collect::<Vec<_>>().join(", ");
                self.error(
                    Some(span.clone()),
                    format!("unknown stage `{upstream}` in `after`"),
                    Some(&format!(
                        "stages are: {known}; or use `after = \"release\"` or `\"manual\"`"
                    )),
                );
            }
        }
        if list.is_empty() {
            self.error(
                Some(span),
                "`after` lists no stage".into(),
                Some("write `after = \"release\"` to start with the release"),
            );
        }
        Trigger::AfterStages {
            stages: list.to_vec(),
            allow_partial: raw.after_partial_success,
        }
    }

    fn task(
        &mut self,
        stage: &str,
        index: usize,
        raw: &RawTask,
        task_names: &mut BTreeSet<String>,
    ) -> TaskSpec {
        self.locations
            .tasks
            .insert((stage.to_owned(), index), self.location(raw.plugin.span()));
        let plugin = self.plugin(&raw.plugin);
        let name = self.call_name(
            "task",
            raw.name.as_ref(),
            &raw.plugin,
            &format!("{stage}-"),
            task_names,
            "task names are unique in a pipeline: later tasks read outputs as `$(task.output)`",
        );
        let limits = self.limits(&raw.limits, &raw.timeout);
        TaskSpec {
            name,
            plugin,
            config: raw
                .config
                .as_ref()
                .map_or_else(|| serde_json::json!({}), |c| toml_to_json(c.get_ref())),
            continue_on_error: raw.continue_on_error,
            idempotent: raw.idempotent,
            limits,
            grants: self.grants(&raw.grants, Some(Access::ReadOnly)),
        }
    }

    fn schedule(&mut self, raw: &RawSchedule) -> Option<Schedule> {
        let zone = raw
            .time_zone
            .as_ref()
            .map_or("UTC", |z| z.get_ref().as_str());
        match Schedule::new(raw.cron.get_ref(), zone) {
            Ok(schedule) => Some(schedule),
            Err(why) => {
                let span = match (&raw.time_zone, why.starts_with("unknown time zone")) {
                    (Some(z), true) => z.span(),
                    _ => raw.cron.span(),
                };
                self.error(
                    Some(span),
                    why,
                    Some("cron is `minute hour day-of-month month day-of-week` (e.g. `0 3 * * 1-5`); time-zone an IANA name such as `Europe/Berlin`"),
                );
                None
            }
        }
    }

    fn freeze(
        &mut self,
        raw: &RawFreeze,
        stage_names: &BTreeMap<String, Range<usize>>,
    ) -> Option<Freeze> {
        const HELP: &str = "a freeze is recurring (`cron` + `duration`, optional `time-zone`) or one-off (`from` + `until`, RFC 3339 times such as `2026-12-24T00:00:00+01:00`)";
        for stage in &raw.stages {
            if !stage_names.contains_key(stage.get_ref()) {
                let known: Vec<&str> = stage_names.keys().map(String::as_str).collect();
                self.error(
                    Some(stage.span()),
                    format!("freeze: unknown stage `{}`", stage.get_ref()),
                    Some(&format!("stages are: {}", known.join(", "))),
                );
            }
        }
        let mut time =
            |text: &Spanned<String>, what: &str| match text.get_ref().parse::<jiff::Timestamp>() {
                Ok(t) => u64::try_from(t.as_millisecond()).ok(),
                Err(e) => {
                    self.error(
                        Some(text.span()),
                        format!("freeze: `{what}` is not a time: {e}"),
                        Some(HELP),
                    );
                    None
                }
            };
        let window = match (&raw.cron, &raw.duration, &raw.from, &raw.until) {
            (Some(cron), Some(duration), None, None) => {
                let schedule = self.schedule(&RawSchedule {
                    cron: cron.clone(),
                    time_zone: raw.time_zone.clone(),
                })?;
                let duration = self.duration(duration, "freeze duration")?;
                FreezeWindow::Recurring { schedule, duration }
            }
            (None, None, Some(from_text), Some(until_text)) => {
                let (from, until) = (time(from_text, "from"), time(until_text, "until"));
                let (from, until) = (from?, until?);
                if until <= from {
                    self.error(
                        Some(until_text.span()),
                        "freeze: `until` is not after `from`".into(),
                        Some(HELP),
                    );
                    return None;
                }
                FreezeWindow::Once { from, until }
            }
            _ => {
                let span = [&raw.cron, &raw.duration, &raw.from, &raw.until]
                    .into_iter()
                    .flatten()
                    .next()
                    .map(Spanned::span);
                self.error(
                    span,
                    "freeze: give either `cron` and `duration`, or `from` and `until`".into(),
                    Some(HELP),
                );
                return None;
            }
        };
        Some(Freeze {
            reason: raw.reason.clone().unwrap_or_else(|| "freeze window".into()),
            stages: raw.stages.iter().map(|s| s.get_ref().clone()).collect(),
            window,
        })
    }

    fn triggers(&mut self, raw: &RawTriggers, pipeline: &RawPipeline) -> ReleaseTriggers {
        let continuous = raw.continuous.as_ref().map(|c| {
            let alias = c.artifact.get_ref();
            if !pipeline.artifacts.keys().any(|a| a.get_ref() == alias) {
                let known: Vec<&str> = pipeline
                    .artifacts
                    .keys()
                    .map(|a| a.get_ref().as_str())
                    .collect();
                self.error(
                    Some(c.artifact.span()),
                    format!("continuous trigger: unknown artifact `{alias}`"),
                    Some(&if known.is_empty() {
                        "the pipeline has no artifacts: add an `[artifacts.NAME]` table".to_owned()
                    } else {
                        format!("artifacts are: {}", known.join(", "))
                    }),
                );
            }
            let interval = c
                .interval
                .as_ref()
                .and_then(|t| self.duration(t, "triggers.continuous.interval"))
                .unwrap_or(Duration::from_secs(60));
            if let Some(text) = &c.interval
                && interval < Duration::from_millis(100)
            {
                self.error(
                    Some(text.span()),
                    "triggers.continuous.interval is under 100ms".into(),
                    Some("the source is asked this often: e.g. `interval = \"1m\"`"),
                );
            }
            ContinuousTrigger {
                artifact: alias.clone(),
                interval,
                branch: c.branch.clone(),
                tag: c.tag.clone(),
            }
        });
        ReleaseTriggers {
            continuous,
            schedule: raw.schedule.as_ref().and_then(|s| self.schedule(s)),
        }
    }

    /// The name of a task or gate: as written (checked: a valid name, not taken in `names`), or
    /// `prefix` + the plugin's file stem, numbered if taken.
    fn call_name(
        &mut self,
        what: &str,
        written: Option<&Spanned<String>>,
        plugin: &Spanned<String>,
        prefix: &str,
        names: &mut BTreeSet<String>,
        unique: &str,
    ) -> String {
        if let Some(n) = written {
            if !is_name(n.get_ref()) {
                self.error(
                    Some(n.span()),
                    format!("invalid {what} name `{}`", n.get_ref()),
                    Some(NAME_HELP),
                );
            }
            if !names.insert(n.get_ref().clone()) {
                self.error(
                    Some(n.span()),
                    format!("duplicate {what} name `{}`", n.get_ref()),
                    Some(unique),
                );
            }
            return n.get_ref().clone();
        }
        let base = Path::new(plugin.get_ref())
            .file_stem()
            .map_or_else(|| what.to_owned(), |s| s.to_string_lossy().into_owned());
        let mut candidate = format!("{prefix}{base}");
        let mut n = 2;
        while !names.insert(candidate.clone()) {
            candidate = format!("{prefix}{base}-{n}");
            n += 1;
        }
        candidate
    }

    fn limits(&mut self, raw: &RawLimits, timeout: &Option<Spanned<String>>) -> Limits {
        let defaults = Limits::default();
        Limits {
            memory: self.bytes(&raw.memory, "limits.memory", defaults.memory),
            log: self.bytes(&raw.log, "limits.log", defaults.log),
            output: self.bytes(&raw.output, "limits.output", defaults.output),
            timeout: timeout
                .as_ref()
                .and_then(|t| self.duration(t, "timeout"))
                .unwrap_or(defaults.timeout),
        }
    }

    fn gates(&mut self, stage: &str, raw: &RawGates, post: bool) -> GatesSpec {
        let which = if post { "post-gates" } else { "pre-gates" };
        let mut duration = |text: &Option<Spanned<String>>, what: &str, default: Duration| {
            text.as_ref()
                .and_then(|t| self.duration(t, &format!("{which}.{what}")))
                .unwrap_or(default)
        };
        let delay = duration(&raw.delay, "delay", Duration::ZERO);
        let interval = duration(&raw.interval, "interval", Duration::from_secs(300));
        let timeout = duration(&raw.timeout, "timeout", Duration::from_secs(15 * 60));
        let min_healthy = duration(&raw.min_healthy, "min-healthy", Duration::ZERO);
        if let Some(text) = &raw.interval
            && interval.is_zero()
        {
            self.error(
                Some(text.span()),
                format!("{which}.interval must be more than zero"),
                Some("the time between two evaluations, e.g. `interval = \"5m\"`"),
            );
        }
        let approvals = match raw
            .approvals
            .as_ref()
            .map(|a| (a.get_ref().as_str(), a.span()))
        {
            None | Some(("before-gates", _)) => ApprovalOrder::BeforeGates,
            Some(("after-successful-gates", _)) => ApprovalOrder::AfterSuccessfulGates,
            Some(("after-gates", _)) => ApprovalOrder::AfterGates,
            Some((other, span)) => {
                self.error(
                    Some(span),
                    format!("unknown approval order `{other}`"),
                    Some("use `before-gates`, `after-successful-gates` or `after-gates` (asked whatever the gates said)"),
                );
                ApprovalOrder::BeforeGates
            }
        };
        let rollback = match &raw.rollback {
            Some(r) if *r.get_ref() && !post => {
                self.error(
                    Some(r.span()),
                    "`rollback` is a setting of post-deployment gates".into(),
                    Some("move it to `[stages.post-gates]`: a failing post-deployment gate redeploys the last release that succeeded on the stage"),
                );
                false
            }
            Some(r) => *r.get_ref(),
            None => false,
        };
        if raw.gates.is_empty() {
            self.error(
                raw.delay.as_ref().or(raw.timeout.as_ref()).map(Spanned::span),
                format!("stage `{stage}`: {which} lists no gate"),
                Some(&format!("add one: `[[stages.{which}.gates]]` with `plugin = \"http-check\"` and its `config`")),
            );
        }
        let mut names = BTreeSet::new();
        let mut gates = Vec::new();
        for gate in &raw.gates {
            let plugin = self.plugin(&gate.plugin);
            let name = self.call_name(
                "gate",
                gate.name.as_ref(),
                &gate.plugin,
                "",
                &mut names,
                &format!("gate names are unique in a stage's {which}"),
            );
            if let Some(workspace) = &gate.grants.workspace {
                self.error(
                    Some(workspace.span()),
                    "a gate has no workspace".into(),
                    Some("gates check the world outside (a URL, a metric); remove `workspace` from the gate's grants"),
                );
            }
            let location = self.location(gate.plugin.span());
            self.locations
                .gates
                .insert((stage.to_owned(), name.clone()), location);
            gates.push(GateSpec {
                name,
                plugin,
                config: gate
                    .config
                    .as_ref()
                    .map_or_else(|| serde_json::json!({}), |c| toml_to_json(c.get_ref())),
                limits: self.limits(&gate.limits, &gate.timeout),
                grants: self.grants(&gate.grants, None),
            });
        }
        GatesSpec {
            gates,
            delay,
            interval,
            timeout,
            min_healthy,
            approvals,
            rollback,
        }
    }

    fn approval(&mut self, raw: &RawApproval) -> ApprovalSpec {
        let span = raw.approvers.first().map(Spanned::span);
        if raw.approvers.is_empty() {
            self.error(
                None,
                "an approval lists no approvers".into(),
                Some("write `approvers = [\"alice\", \"group:release-managers\"]`"),
            );
        }
        for approver in &raw.approvers {
            let a = approver.get_ref();
            let name = a.strip_prefix("group:").unwrap_or(a);
            if name.is_empty() || name.contains(char::is_whitespace) {
                self.error(
                    Some(approver.span()),
                    format!("invalid approver `{a}`"),
                    Some("write a user name, or `group:name`"),
                );
            }
        }
        let count = raw.approvers.len() as u32;
        let policy = match raw
            .policy
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("any", _)) => ApprovalPolicy::Any,
            Some(("all", _)) => ApprovalPolicy::All,
            Some(("sequence", _)) => ApprovalPolicy::Sequence,
            Some(("n-of-m", span)) => match raw.required.as_ref().map(|r| (*r.get_ref(), r.span()))
            {
                Some((n, _)) if (1..=count).contains(&n) => ApprovalPolicy::AtLeast(n),
                Some((n, rspan)) => {
                    self.error(
                        Some(rspan),
                        format!(
                            "`required = {n}` but {count} approver{} listed",
                            if count == 1 { " is" } else { "s are" }
                        ),
                        Some("require between 1 and the number of approvers"),
                    );
                    ApprovalPolicy::Any
                }
                None => {
                    self.error(
                        Some(span),
                        "policy `n-of-m` needs `required = N`".into(),
                        None,
                    );
                    ApprovalPolicy::Any
                }
            },
            Some((other, span)) => {
                self.error(
                    Some(span),
                    format!("unknown approval policy `{other}`"),
                    Some("use `any`, `all`, `sequence` or `n-of-m` (with `required = N`)"),
                );
                ApprovalPolicy::Any
            }
        };
        if raw.required.is_some()
            && !matches!(policy, ApprovalPolicy::AtLeast(_))
            && raw.policy.as_ref().is_none_or(|p| p.get_ref() != "n-of-m")
        {
            self.error(
                raw.required.as_ref().map(Spanned::span).or(span),
                "`required` only applies to `policy = \"n-of-m\"`".into(),
                None,
            );
        }
        ApprovalSpec {
            approvers: raw.approvers.iter().map(|a| a.get_ref().clone()).collect(),
            policy,
            allow_release_creator: raw.allow_release_creator,
            skip_if_approved_in_previous_stage: raw.skip_if_approved_in_previous_stage,
            timeout: raw
                .timeout
                .as_ref()
                .and_then(|t| self.duration(t, "approval timeout")),
        }
    }

    /// Orders stages so each comes after those it waits on; reports cycles.
    fn topological(
        &mut self,
        stages: Vec<StageSpec>,
        spans: &HashMap<String, Range<usize>>,
    ) -> Vec<StageSpec> {
        let mut remaining = stages;
        let mut ordered: Vec<StageSpec> = Vec::new();
        loop {
            let placed: BTreeSet<String> = ordered.iter().map(|s| s.name.clone()).collect();
            let ready = remaining.iter().position(|s| match &s.trigger {
                Trigger::AfterStages { stages, .. } => stages
                    .iter()
                    .all(|u| placed.contains(u) || !spans.contains_key(u) || *u == s.name),
                _ => true,
            });
            match ready {
                Some(i) => ordered.push(remaining.remove(i)),
                None => break,
            }
        }
        if !remaining.is_empty() {
            let names: Vec<String> = remaining.iter().map(|s| s.name.clone()).collect();
            let first = &remaining[0].name;
            self.error(
                spans.get(first).cloned(),
                format!("stages wait on each other in a cycle: {}", names.join(", ")),
                Some("break the cycle: one of these stages must start after the release or another stage"),
            );
            ordered.extend(remaining);
        }
        ordered
    }

    /// Every `$(name)` in task configurations and grants must name a variable in scope: the
    /// pipeline's, the stage's, a built-in, or an output `$(task.name)` of an earlier task.
    fn check_references(&mut self, plan: &Plan, raw: &RawPipeline) {
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
            let stage_vars: BTreeSet<&str> =
                stage.variables.iter().map(|v| v.name.as_str()).collect();
            let raw_stage = raw.stages.iter().find(|s| s.name.get_ref() == &stage.name);
            for (index, task) in stage.tasks.iter().enumerate() {
                let mut texts = Vec::new();
                collect_strings(&task.config, &mut texts);
                texts.extend(
                    task.grants
                        .dirs
                        .iter()
                        .flat_map(|d| [d.host.clone(), d.guest.clone()]),
                );
                for text in texts {
                    for reference in references(&text) {
                        let known = pipeline_vars.contains(reference)
                            || stage_vars.contains(reference)
                            || BUILTIN_VARIABLES.contains(&reference)
                            || reference
                                .split_once('.')
                                .is_some_and(|(t, _)| visible.contains(t));
                        if !known {
                            let span = raw_stage.and_then(|s| s.tasks.get(index)).map(|t| {
                                t.config
                                    .as_ref()
                                    .map_or_else(|| t.plugin.span(), Spanned::span)
                            });
                            self.error(
                                span,
                                format!("unknown variable `$({reference})` in task `{}`", task.name),
                                Some("declare it under `[variables]` or the stage's `variables`, or read an earlier task's output as `$(task-name.output)`"),
                            );
                        }
                    }
                }
                visible.insert(task.name.as_str());
            }
            earlier_tasks.insert(stage.name.as_str(), visible);
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

fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

fn toml_to_json(table: &toml::Table) -> serde_json::Value {
    serde_json::to_value(table).unwrap_or(serde_json::Value::Null)
}
