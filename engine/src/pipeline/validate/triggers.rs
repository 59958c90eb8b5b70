//! Cron schedules (a stage's `schedule`, a freeze's, a trigger's) and `[triggers]`: releases
//! created continuously from an artifact's new versions or on a schedule.

use std::time::Duration;

use super::Validator;
use crate::pipeline::plan::*;
use crate::pipeline::schema::*;

impl Validator<'_> {
    pub(super) fn schedule(&mut self, raw: &RawSchedule) -> Option<Schedule> {
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

    pub(super) fn triggers(
        &mut self,
        raw: &RawTriggers,
        pipeline: &RawPipeline,
    ) -> ReleaseTriggers {
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
}
