//! `[[freezes]]`: windows, recurring or one-off, in which deployments to some stages wait.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::Validator;
use crate::pipeline::plan::*;
use crate::pipeline::schema::*;

impl Validator<'_> {
    pub(super) fn freeze(
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
                // A time before 1970 is refused, not dropped: a freeze must never vanish.
                Ok(t) => u64::try_from(t.as_millisecond()).ok().or_else(|| {
                    self.error(
                        Some(text.span()),
                        format!("freeze: `{what}` is before 1970"),
                        Some(HELP),
                    );
                    None
                }),
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
}
