//! The resolved plan: what a release snapshots and the scheduler runs. Stages are in a
//! topological order (every stage after the stages it waits on); every setting is filled in.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{Access, Limits, millis};

/// A validated pipeline, ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Pipeline name: `[a-z0-9-]`, the prefix of its release names.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The directory of the pipeline file: base of relative plugin paths and
    /// `$(sluice.pipeline-dir)`.
    pub dir: String,
    /// Pipeline-level variables.
    pub variables: Vec<VariableSpec>,
    /// Artifacts by alias, in alias order.
    pub artifacts: Vec<ArtifactSpec>,
    /// Stages, each after the stages it waits on.
    pub stages: Vec<StageSpec>,
    /// What creates releases without anyone asking.
    #[serde(default)]
    pub triggers: ReleaseTriggers,
    /// Windows in which deployments wait.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freezes: Vec<Freeze>,
}

/// A deny window: a deployment due inside it waits until it ends (unless an admin breaks glass).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// Why, for people.
    pub reason: String,
    /// The stages it holds; empty: all of them.
    pub stages: Vec<String>,
    /// When.
    pub window: FreezeWindow,
}

/// When a freeze holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FreezeWindow {
    /// From every time of the schedule, for `duration`.
    Recurring {
        /// When each window starts.
        schedule: Schedule,
        /// How long each lasts.
        duration: Duration,
    },
    /// Once, from `from` until `until` (Unix milliseconds).
    Once {
        /// Start.
        from: u64,
        /// End.
        until: u64,
    },
}

impl Freeze {
    /// If the freeze holds `stage` at `now`: when that window ends.
    pub fn holds_until(&self, stage: &str, now: u64) -> Option<u64> {
        if !self.stages.is_empty() && !self.stages.iter().any(|s| s == stage) {
            return None;
        }
        match &self.window {
            FreezeWindow::Once { from, until } => (*from <= now && now < *until).then_some(*until),
            FreezeWindow::Recurring { schedule, duration } => {
                let length = millis(*duration);
                // The first window that starts after `now - length` is the one that may hold now.
                let start = schedule.next_after(now.saturating_sub(length))?;
                // Saturating: a window ending past the end of time holds "forever" (freeze
                // durations are bounded by the parser; a plan stored before may hold more).
                (start <= now).then_some(start.saturating_add(length))
            }
        }
    }
}

impl Plan {
    /// If a freeze holds `stage` at `now`: when the freezes holding it (back to back or
    /// overlapping) all end, and the reason of the first.
    pub fn frozen_until(&self, stage: &str, now: u64) -> Option<(u64, String)> {
        let mut found: Option<(u64, String)> = None;
        let mut at = now;
        // Bounded: windows that chain forever are a mistake, not a reason to loop forever.
        for _ in 0..64 {
            let next = self
                .freezes
                .iter()
                .filter_map(|f| Some((f.holds_until(stage, at)?, &f.reason)))
                .max_by_key(|(until, _)| *until);
            let Some((until, reason)) = next else { break };
            let reason = found.take().map_or_else(|| reason.clone(), |(_, r)| r);
            found = Some((until, reason));
            at = until;
        }
        found
    }
}

/// Release triggers (acted on by `sluice serve`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleaseTriggers {
    /// Continuous deployment: a release for every new version of an artifact.
    pub continuous: Option<ContinuousTrigger>,
    /// A release at every time of a schedule.
    pub schedule: Option<Schedule>,
}

/// Continuous deployment: poll an artifact's source; every new version that passes the
/// filters gets a release (with that version) exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuousTrigger {
    /// The artifact's alias.
    pub artifact: String,
    /// How often its source is asked.
    pub interval: Duration,
    /// Only versions built from this branch.
    pub branch: Option<String>,
    /// Only versions with this tag.
    pub tag: Option<String>,
}

/// A variable and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableSpec {
    /// Name.
    pub name: String,
    /// Where the value comes from.
    pub value: ValueSource,
    /// Masked in logs; never stored in clear.
    pub secret: bool,
    /// May be set when a release is created (`settable = true`; never a secret, never a
    /// stage's variable).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settable: bool,
}

/// Where a variable's value comes from. Secrets are kept as references, never as values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValueSource {
    /// Written in the pipeline.
    Literal(String),
    /// Read from the engine's environment when a task needs it.
    Env(String),
    /// Read from a file (absolute path) when a task needs it.
    File(String),
}

/// An artifact of the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactSpec {
    /// The alias tasks see it under (also its workspace folder).
    pub alias: String,
    /// The artifact-source plugin: a built-in name or an absolute path.
    pub source: String,
    /// The source's configuration, JSON.
    pub config: serde_json::Value,
    /// Which version a release takes by default.
    pub selector: Selector,
    /// What the source plugin may reach.
    pub grants: GrantSpec,
}

/// How a release picks an artifact version by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selector {
    /// The newest version.
    Latest,
    /// Exactly this version.
    Exact(String),
    /// The newest version built from this branch.
    Branch(String),
    /// The newest version carrying this tag.
    Tag(String),
}

/// Grants as the pipeline writes them; `$(...)` references are resolved when a task runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantSpec {
    /// Directories: host path (absolute once resolved), guest path, access.
    pub dirs: Vec<DirSpec>,
    /// Environment variable names, values taken from the engine's environment.
    pub env: Vec<String>,
    /// Outbound HTTP hosts.
    pub hosts: Vec<String>,
    /// Access to the deployment's workspace (granted at `/workspace`), if any.
    pub workspace: Option<Access>,
}

/// One granted directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirSpec {
    /// Host path, possibly with `$(sluice.pipeline-dir)` or `$(sluice.data-dir)`.
    pub host: String,
    /// Guest path.
    pub guest: String,
    /// Access.
    pub access: Access,
}

/// What starts a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// As soon as the release exists.
    AfterRelease,
    /// When all these stages succeeded (or partially succeeded, if allowed).
    AfterStages {
        /// The stages waited on.
        stages: Vec<String>,
        /// Also start when they only partially succeeded.
        allow_partial: bool,
    },
    /// Only when someone deploys it.
    Manual,
}

/// How approvers' decisions combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalPolicy {
    /// One approval is enough.
    Any,
    /// Everyone, in any order.
    All,
    /// Everyone, in the listed order.
    Sequence,
    /// At least this many of the approvers.
    AtLeast(u32),
}

/// A pre- or post-deployment approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalSpec {
    /// Users, and groups as `group:name`.
    pub approvers: Vec<String>,
    /// How decisions combine.
    pub policy: ApprovalPolicy,
    /// Whether the release's creator may approve.
    pub allow_release_creator: bool,
    /// Skip if the same approver approved the previous stage.
    pub skip_if_approved_in_previous_stage: bool,
    /// When the approval expires (rejecting the deployment).
    pub timeout: Option<Duration>,
}

/// How a stage takes releases that arrive while it is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueuePolicy {
    /// Any number at once, or at most this many.
    Parallel(Option<u32>),
    /// One at a time, every release in turn.
    Sequential,
    /// One at a time, only the newest waiting release.
    LatestOnly,
}

/// A cron schedule in a time zone (of a stage, or of a release trigger) (daylight saving time included: `0 9 * * *` is 09:00 on the
/// wall clock of the zone, summer and winter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Schedule {
    /// Cron: `min hour day-of-month month day-of-week` (or with seconds first, and a year);
    /// day-of-week as in Unix cron, 0 or 7 Sunday ... 6 Saturday, or names (`MON-FRI`).
    pub cron: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub time_zone: String,
}

impl StageSpec {
    /// Every plugin the stage's deployment uses: its tasks' and its gates'.
    pub fn plugins(&self) -> impl Iterator<Item = &String> {
        let gates = [&self.pre_gates, &self.post_gates]
            .into_iter()
            .flatten()
            .flat_map(|g| &g.gates);
        self.tasks
            .iter()
            .map(|t| &t.plugin)
            .chain(gates.map(|g| &g.plugin))
    }
}

impl Plan {
    /// Every plugin the plan uses: artifact sources, tasks and gates.
    pub fn plugins(&self) -> impl Iterator<Item = &String> {
        self.artifacts
            .iter()
            .map(|a| &a.source)
            .chain(self.stages.iter().flat_map(StageSpec::plugins))
    }

    /// [`Plan::plugins`], to rewrite (pinning `oci://` references to digests).
    pub fn plugins_mut(&mut self) -> impl Iterator<Item = &mut String> {
        let stages = self.stages.iter_mut().flat_map(|s| {
            let gates = [&mut s.pre_gates, &mut s.post_gates]
                .into_iter()
                .flatten()
                .flat_map(|g| &mut g.gates);
            s.tasks
                .iter_mut()
                .map(|t| &mut t.plugin)
                .chain(gates.map(|g| &mut g.plugin))
        });
        self.artifacts
            .iter_mut()
            .map(|a| &mut a.source)
            .chain(stages)
    }
}

/// Rewrites a day-of-week field from Unix cron numbering (0 or 7 Sunday, 1 Monday ... 6
/// Saturday) to the parser's (1 Sunday ... 7 Saturday). Names (`MON`) and steps are kept.
fn unix_weekdays(field: &str) -> String {
    let day = |n: &str| match n.parse::<u32>() {
        Ok(7) => "1".to_owned(),
        Ok(n) => (n + 1).to_string(),
        Err(_) => n.to_owned(),
    };
    field
        .split(',')
        .map(|item| {
            let (base, step) = match item.split_once('/') {
                Some((base, step)) => (base, Some(step)),
                None => (item, None),
            };
            let base = match base.split_once('-') {
                // `5-7`: Friday to Sunday, which wraps around the parser's week.
                Some((from, "7")) if step.is_none() => format!("{}-7,1", day(from)),
                Some((from, to)) => format!("{}-{}", day(from), day(to)),
                None => day(base),
            };
            match step {
                Some(step) => format!("{base}/{step}"),
                None => base,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Schedule {
    /// Parses and checks it.
    pub fn new(cron: &str, time_zone: &str) -> Result<Self, String> {
        let schedule = Self {
            cron: cron.trim().to_owned(),
            time_zone: time_zone.to_owned(),
        };
        schedule.parts()?;
        Ok(schedule)
    }

    fn parts(&self) -> Result<(jiff_cron::Schedule, jiff::tz::TimeZone), String> {
        // Standard cron has no seconds field; the parser wants one.
        let mut fields: Vec<String> = self.cron.split_whitespace().map(str::to_owned).collect();
        match fields.len() {
            // Standard cron has no seconds field; the parser wants one.
            5 => fields.insert(0, "0".into()),
            6 | 7 => {}
            n => {
                return Err(format!(
                    "cron `{}` has {n} fields: it takes 5 (or 6 with seconds first, 7 with a year last)",
                    self.cron
                ));
            }
        }
        fields[5] = unix_weekdays(&fields[5]);
        let expression = fields.join(" ");
        let cron = expression.parse::<jiff_cron::Schedule>().map_err(|e| {
            // The parser's message ends with the reason (before it: the expression, marked).
            let reason = e.to_string();
            let reason = reason.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            format!("cron `{}`: {}", self.cron, reason.trim())
        })?;
        let zone = jiff::tz::TimeZone::get(&self.time_zone)
            .map_err(|_| format!("unknown time zone `{}`", self.time_zone))?;
        Ok((cron, zone))
    }

    /// The first time after `after` (Unix milliseconds) the schedule fires, in Unix
    /// milliseconds; `None` if it never does again.
    pub fn next_after(&self, after: u64) -> Option<u64> {
        let (cron, zone) = self.parts().ok()?;
        let after = jiff::Timestamp::from_millisecond(i64::try_from(after).ok()?).ok()?;
        let next = cron.after(after.to_zoned(zone)).next()?;
        u64::try_from(next.timestamp().as_millisecond()).ok()
    }
}

/// Whether a stage's approval comes before its gates or after them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalOrder {
    /// Approvers decide first; the gates are evaluated once the approval is given.
    #[default]
    BeforeGates,
    /// The gates first; approvers are asked only once they passed.
    AfterSuccessfulGates,
    /// The gates first; approvers are asked whatever the gates said (they see the results).
    AfterGates,
}

/// The pre- or post-deployment gates of a stage and how they are sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GatesSpec {
    /// The gates; all must be healthy in the same evaluation.
    pub gates: Vec<GateSpec>,
    /// Wait this long before the first evaluation.
    pub delay: Duration,
    /// Time between evaluations.
    pub interval: Duration,
    /// The gates fail unless they passed this long after they started.
    pub timeout: Duration,
    /// All gates must stay healthy this long (across evaluations) to pass.
    pub min_healthy: Duration,
    /// Approvals before or after the gates.
    pub approvals: ApprovalOrder,
    /// Post-deployment gates only: when they fail, redeploy the last release that succeeded on
    /// this stage.
    pub rollback: bool,
}

/// One gate: a gate plugin, its configuration and what it may reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSpec {
    /// Name, unique in the stage's gates (defaults to the plugin name, numbered if repeated).
    pub name: String,
    /// The gate plugin: a built-in name or a path.
    pub plugin: String,
    /// Configuration, JSON, with `$(...)` references still in it.
    pub config: serde_json::Value,
    /// Memory, time, log and output limits of one evaluation.
    pub limits: Limits,
    /// What the gate may reach.
    pub grants: GrantSpec,
}

/// One stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    /// Name.
    pub name: String,
    /// What starts it.
    pub trigger: Trigger,
    /// Stage-level variables (override pipeline ones).
    pub variables: Vec<VariableSpec>,
    /// Tasks, run in order.
    pub tasks: Vec<TaskSpec>,
    /// Approval before deploying.
    pub pre_approval: Option<ApprovalSpec>,
    /// Approval after deploying, before downstream stages start.
    pub post_approval: Option<ApprovalSpec>,
    /// Queueing policy.
    pub queue: QueuePolicy,
    /// Gates evaluated before the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_gates: Option<GatesSpec>,
    /// Gates evaluated after the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_gates: Option<GatesSpec>,
    /// When its trigger is satisfied, wait for the schedule's next time instead of starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// The agent pool whose agents run it; `None`: the server runs it itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Capabilities an agent must have (`name` or `name=value`; see
    /// [`Demand`](crate::types::Demand)).
    pub demands: Vec<String>,
}

/// One task of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Name, unique in the pipeline (defaults to the plugin name, numbered if repeated).
    pub name: String,
    /// The task plugin: a built-in name or an absolute path.
    pub plugin: String,
    /// Configuration, JSON, with `$(...)` references still in it.
    pub config: serde_json::Value,
    /// A failure makes the stage *partially succeeded* instead of failed.
    pub continue_on_error: bool,
    /// Safe to run again after an engine restart (same idempotency key).
    pub idempotent: bool,
    /// Memory, time, log and output limits.
    pub limits: Limits,
    /// What the task may reach.
    pub grants: GrantSpec,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: &str) -> u64 {
        time.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
    }

    #[test]
    fn day_of_week_numbers_are_unix_crons() {
        // 2026-11-21 is a Saturday.
        let next = |cron: &str| {
            let schedule = Schedule::new(cron, "UTC").unwrap();
            schedule.next_after(at("2026-11-21T12:00:00Z")).unwrap()
        };
        assert_eq!(next("0 3 * * 1-5"), at("2026-11-23T03:00:00Z")); // Monday
        assert_eq!(next("0 3 * * 0"), at("2026-11-22T03:00:00Z")); // Sunday
        assert_eq!(next("0 3 * * 7"), at("2026-11-22T03:00:00Z")); // Sunday
        assert_eq!(next("0 18 * * 5-7"), at("2026-11-21T18:00:00Z")); // Saturday, in Fri-Sun
        assert_eq!(next("0 3 * * MON"), at("2026-11-23T03:00:00Z"));
        assert_eq!(next("0 3 * * 2,4"), at("2026-11-24T03:00:00Z")); // Tuesday
    }
}
