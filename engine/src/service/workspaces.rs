//! The service's sweep of workspaces (see `scheduler/workspaces.rs`): once at start — in the
//! background, so a directory left full by an older Sluice never delays readiness — then
//! every [`every`]`(limits.workspace-keep)`, removing what no deployment owns and failed
//! deployments' workspaces older than `workspace-keep`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Service;
use crate::scheduler::{Sweep, Swept};

/// How often the sweep runs: every `keep`, at least every hour, at most every minute.
pub fn every(keep: Duration) -> Duration {
    keep.clamp(Duration::from_secs(60), Duration::from_secs(3600))
}

impl Service {
    /// Removes now every workspace no deployment owns, and failed deployments' workspaces
    /// older than `limits.workspace-keep`. Blocking: the sweep loop runs it off the async
    /// threads.
    pub fn sweep_workspaces(&self) -> Swept {
        self.engine.sweep_workspaces(Sweep {
            keep: Some(self.config.limits.workspace_keep),
            rerun: None,
        })
    }
}

/// Starts the sweep (its first round at once); it ends when the service stops or is dropped.
pub(super) fn spawn(service: &Arc<Service>) {
    let weak: Weak<Service> = Arc::downgrade(service);
    let mut stopping = service.stopping.subscribe();
    let mut ticks = tokio::time::interval(every(service.config.limits.workspace_keep));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            let Some(service) = weak.upgrade() else {
                return;
            };
            let Ok(swept) = tokio::task::spawn_blocking(move || service.sweep_workspaces()).await
            else {
                return;
            };
            if swept.removed > 0 {
                tracing::info!(
                    removed = swept.removed,
                    kept = swept.kept,
                    "removed {} workspaces no deployment needs",
                    swept.removed
                );
            }
            for problem in swept.problems {
                tracing::warn!("sweeping workspaces: {problem}");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceConfig;

    #[test]
    fn workspace_keep_is_read_and_a_bad_one_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        let load = |keep: &str| {
            let limits = format!("[limits]\nworkspace-keep = \"{keep}\"\n");
            std::fs::write(&path, format!("pipelines = \"p\"\n{limits}")).unwrap();
            ServiceConfig::load(&path)
        };
        let config = load("90m").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.limits.workspace_keep, Duration::from_secs(90 * 60));
        let config = load("0s").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.limits.workspace_keep, Duration::ZERO);
        let e = load("a week").unwrap_err();
        let shown = path.display();
        assert!(
            e.starts_with(&format!("{shown}: limits.workspace-keep: ")),
            "{e}"
        );
        std::fs::write(&path, "pipelines = \"p\"\n").unwrap();
        let config = ServiceConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.limits.workspace_keep, Duration::from_secs(24 * 3600));
        assert_eq!(
            every(config.limits.workspace_keep),
            Duration::from_secs(3600)
        );
        assert_eq!(every(Duration::ZERO), Duration::from_secs(60));
    }
}
