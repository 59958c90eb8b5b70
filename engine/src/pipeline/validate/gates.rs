//! `[stages.pre-gates]` and `[stages.post-gates]`: timing, approval order, rollback, and each
//! gate's plugin, name, limits and grants.

use std::collections::BTreeSet;
use std::time::Duration;

use toml::Spanned;

use super::{Validator, toml_to_json};
use crate::pipeline::plan::*;
use crate::pipeline::schema::*;

impl Validator<'_> {
    pub(super) fn gates(&mut self, stage: &str, raw: &RawGates, post: bool) -> GatesSpec {
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
}
