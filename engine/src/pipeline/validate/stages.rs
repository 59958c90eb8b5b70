//! `[[stages]]`: a stage's trigger (`after`), tasks and queue policy, and the order stages run in
//! (cycles reported).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use super::{Validator, toml_to_json};
use crate::pipeline::plan::*;
use crate::pipeline::schema::*;
use crate::types::Access;

impl Validator<'_> {
    pub(super) fn stage(
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
        let variables = self.variables(&raw.variables, Some(name.as_str()));
        StageSpec {
            name,
            trigger,
            schedule,
            variables,
            tasks,
            pre_approval: raw.pre_approval.as_ref().map(|a| self.approval(a)),
            post_approval: raw.post_approval.as_ref().map(|a| self.approval(a)),
            queue,
            pre_gates,
            post_gates,
            pool: raw.pool.as_ref().map(|pool| {
                self.check_name("pool name", pool);
                let at = self.location(pool.span());
                self.locations.pools.insert(raw.name.get_ref().clone(), at);
                pool.get_ref().clone()
            }),
            demands: self.demands(raw),
        }
    }

    /// The stage's `demands`, each `name` or `name=value`; only a stage with a `pool` runs on
    /// an agent, so demands without one would be ignored: refused instead.
    fn demands(&mut self, raw: &RawStage) -> Vec<String> {
        for demand in &raw.demands {
            if let Err(e) = crate::types::Demand::parse(demand.get_ref()) {
                self.error(
                    Some(demand.span()),
                    format!("invalid demand: {e}"),
                    Some("write a capability's name (`docker`) or name=value (`region=eu`)"),
                );
            }
        }
        if let (Some(first), None) = (raw.demands.first(), &raw.pool) {
            self.error(
                Some(first.span()),
                format!(
                    "stage `{}` has demands but no pool: only agents meet demands",
                    raw.name.get_ref()
                ),
                Some("add `pool = \"NAME\"` (a pool of `sluice.toml`), or remove `demands`"),
            );
        }
        raw.demands.iter().map(|d| d.get_ref().clone()).collect()
    }

    pub(super) fn after_stages(
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

    pub(super) fn task(
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

    /// Orders stages so each comes after those it waits on; reports cycles.
    pub(super) fn topological(
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
}
