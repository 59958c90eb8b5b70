//! Workspaces are removed once no deployment needs them. A deployment's workspace
//! (`DATA/workspaces/<release>/<stage>/<attempt>`) goes when the deployment succeeds (or was
//! skipped), and when a later attempt of its stage starts; after any other end (failed,
//! rejected, canceled, partially succeeded) it is kept so it can be inspected: by the service
//! for `limits.workspace-keep`, by `sluice run` until its next run of the pipeline. A sweep
//! ([`Engine::sweep_workspaces`], releases in name order) removes what no deployment owns:
//! at start and, in the service, periodically.
//!
//! Removal never follows a symbolic link: a link (a task may make one inside its workspace)
//! is removed itself, never what it points to (`std::fs::remove_dir_all` does not follow
//! links; an entry that is a link is unlinked).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use super::Engine;
use crate::core::{Release, StageState};
use crate::store::now_ms;

/// What a sweep keeps of failed deployments' workspaces.
#[derive(Debug, Clone, Copy)]
pub struct Sweep<'a> {
    /// Keep a failed deployment's workspace this long after it ended (the service's
    /// `limits.workspace-keep`); `None` keeps it until the stage's next attempt.
    pub keep: Option<Duration>,
    /// A run of this pipeline is about to start (`sluice run`): the failed workspaces of its
    /// earlier releases go, as its stages run again.
    pub rerun: Option<&'a str>,
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Workspaces (and stray entries) removed.
    pub removed: usize,
    /// Workspaces kept: their deployment is under way, or failed and kept for inspection.
    pub kept: usize,
    /// What could not be looked at or removed, one line each.
    pub problems: Vec<String>,
}

/// Whether the workspace of `release`'s stage `stage`, attempt `attempt` may go (`release`:
/// the stored release, `None` when there is none), at `now` (Unix milliseconds).
pub(super) fn removable(
    release: Option<&Release>,
    stage: &str,
    attempt: u32,
    now: u64,
    sweep: Sweep<'_>,
) -> bool {
    let Some(release) = release else {
        return true;
    };
    let Some(run) = release.stage(stage) else {
        return true;
    };
    let Some(last) = run.attempts.last() else {
        return true;
    };
    if attempt != last.number {
        // A later attempt started (or this one never existed).
        return true;
    }
    match last.state {
        state if !state.is_terminal() => false,
        StageState::Succeeded | StageState::Skipped => true,
        _ if sweep.rerun == Some(release.pipeline.as_str()) => true,
        _ => sweep.keep.is_some_and(|keep| {
            let ended = last.finished_at.unwrap_or(last.started_at);
            ended.saturating_add(crate::types::millis(keep)) <= now
        }),
    }
}

/// Removes `path` — a directory tree, a file or a link (itself, never its target); nothing
/// there is fine (false).
pub(super) fn remove(path: &Path) -> std::io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path).map(|()| true),
        Ok(_) => std::fs::remove_file(path).map(|()| true),
    }
}

/// Removes `dir` if it is an empty directory (a stage's or a release's, once its last
/// workspace went).
fn remove_if_empty(dir: &Path) {
    let _ = std::fs::remove_dir(dir);
}

impl Engine {
    /// After a commit of `release`: removes the workspaces of its deployments that succeeded
    /// or were superseded by a later attempt, each once per driver (`tidied`). Failed ones
    /// stay for the sweep.
    pub(super) fn tidy_workspaces(&self, release: &Release, tidied: &mut HashSet<(String, u32)>) {
        let keep = Sweep {
            keep: None,
            rerun: None,
        };
        for run in &release.stages {
            for attempt in &run.attempts {
                let last = run.attempts.last().map(|a| a.number) == Some(attempt.number);
                if last && !attempt.state.is_terminal() {
                    continue;
                }
                if !tidied.insert((run.name.clone(), attempt.number)) {
                    continue;
                }
                if !removable(Some(release), &run.name, attempt.number, now_ms(), keep) {
                    continue;
                }
                let Ok(path) = self.workspace(&release.name, &run.name, attempt.number) else {
                    continue;
                };
                match remove(&path) {
                    Ok(true) => {}
                    // A deployment that never made its workspace leaves nothing to tidy, its
                    // parents included.
                    Ok(false) => continue,
                    Err(e) => tracing::warn!(
                        release = %release.name,
                        "cannot remove workspace {}: {e}",
                        path.display()
                    ),
                }
                if let Some(stage_dir) = path.parent() {
                    remove_if_empty(stage_dir);
                    stage_dir.parent().map(remove_if_empty);
                }
            }
        }
    }

    /// Removes every workspace no deployment owns: of releases not stored, of attempts a
    /// later one replaced, of deployments that succeeded, and of failed ones past
    /// `sweep.keep` (or of the pipeline `sweep.rerun` runs again). Blocking (file system and
    /// store reads): run it off the async threads.
    pub fn sweep_workspaces(&self, sweep: Sweep<'_>) -> Swept {
        let root = self.data_dir.join("workspaces");
        let mut swept = Swept::default();
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return swept,
            Err(e) => {
                swept.problems.push(format!("{}: {e}", root.display()));
                return swept;
            }
        };
        // In name order: one release after another, predictably.
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `.empty`, the shared read-only empty workspace, and anything hidden.
            if name.starts_with('.') {
                continue;
            }
            let release = match self.store.release(&name) {
                Ok(release) => release,
                Err(e) => {
                    swept.problems.push(format!("release {name}: {e}"));
                    continue;
                }
            };
            self.sweep_release(&entry.path(), release.as_ref(), sweep, &mut swept);
            remove_if_empty(&entry.path());
        }
        swept
    }

    /// Sweeps one release's directory of workspaces.
    fn sweep_release(
        &self,
        dir: &Path,
        release: Option<&Release>,
        sweep: Sweep<'_>,
        swept: &mut Swept,
    ) {
        let gone = |path: &Path, swept: &mut Swept| match remove(path) {
            Ok(_) => swept.removed += 1,
            Err(e) => swept.problems.push(format!("{}: {e}", path.display())),
        };
        // A release that is not stored, or a link or file where its directory should be.
        let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
        if release.is_none() || !is_dir {
            return gone(dir, swept);
        }
        let Ok(stages) = std::fs::read_dir(dir) else {
            return;
        };
        for stage in stages.filter_map(Result::ok) {
            let stage_name = stage.file_name().to_string_lossy().into_owned();
            let stage_dir = stage.path();
            let is_dir = std::fs::symlink_metadata(&stage_dir).is_ok_and(|m| m.is_dir());
            let attempts = match std::fs::read_dir(&stage_dir) {
                Ok(attempts) if is_dir => attempts,
                _ => {
                    gone(&stage_dir, swept);
                    continue;
                }
            };
            for attempt in attempts.filter_map(Result::ok) {
                let number = attempt.file_name().to_string_lossy().parse::<u32>();
                let remove_it = match number {
                    Ok(number) => removable(release, &stage_name, number, now_ms(), sweep),
                    // Not a workspace this engine made.
                    Err(_) => true,
                };
                if remove_it {
                    gone(&attempt.path(), swept);
                } else {
                    swept.kept += 1;
                }
            }
            remove_if_empty(&stage_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::core::{Event, apply};

    const PIPELINE: &str = r#"
version = 1
name = "web"
[[stages]]
name = "qa"
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;

    /// Release 1 of `web`, its `qa` deployment (attempt 1) started at 1,000.
    fn started() -> Release {
        let plan = crate::pipeline::parse("web.toml", PIPELINE, Path::new("/p"), "web")
            .unwrap_or_else(|e| panic!("{e}"))
            .plan;
        let mut r = Release::new(crate::core::NewRelease {
            plan,
            number: 1,
            creator: "rita".into(),
            description: None,
            artifacts: vec![],
            variables: vec![],
            digests: vec![],
            created_at: 1_000,
        });
        apply(&mut r, Event::Created, 1_000).unwrap();
        r
    }

    fn ended(state: StageState, at: u64) -> Release {
        let mut r = started();
        let attempt = &mut r.stages[0].attempts[0];
        attempt.state = state;
        attempt.finished_at = Some(at);
        r
    }

    const KEEP_NONE: Sweep<'static> = Sweep {
        keep: None,
        rerun: None,
    };

    #[test]
    fn a_workspace_goes_when_its_deployment_succeeded_and_stays_while_it_runs() {
        let running = started();
        assert!(!running.stages[0].attempts[0].state.is_terminal());
        assert!(!removable(Some(&running), "qa", 1, 9_999_999, KEEP_NONE));
        let done = ended(StageState::Succeeded, 2_000);
        assert!(removable(Some(&done), "qa", 1, 2_000, KEEP_NONE));
        // No such release, stage or attempt: nobody owns it.
        assert!(removable(None, "qa", 1, 0, KEEP_NONE));
        assert!(removable(Some(&running), "prod", 1, 0, KEEP_NONE));
        assert!(removable(Some(&running), "qa", 7, 0, KEEP_NONE));
    }

    #[test]
    fn a_failed_deployments_workspace_is_kept_for_workspace_keep_or_until_the_next_attempt() {
        let keep = Sweep {
            keep: Some(Duration::from_secs(60)),
            rerun: None,
        };
        for state in [
            StageState::Failed,
            StageState::Rejected,
            StageState::Canceled,
            StageState::PartiallySucceeded,
        ] {
            let failed = ended(state, 2_000);
            assert!(!removable(Some(&failed), "qa", 1, u64::MAX, KEEP_NONE));
            assert!(
                !removable(Some(&failed), "qa", 1, 61_999, keep),
                "{state:?}"
            );
            assert!(removable(Some(&failed), "qa", 1, 62_000, keep), "{state:?}");
            let zero = Sweep {
                keep: Some(Duration::ZERO),
                rerun: None,
            };
            assert!(removable(Some(&failed), "qa", 1, 2_000, zero));
            // `sluice run` of the same pipeline runs the stage again; another pipeline's does not.
            let rerun = |pipeline| Sweep {
                keep: None,
                rerun: Some(pipeline),
            };
            assert!(removable(Some(&failed), "qa", 1, 2_000, rerun("web")));
            assert!(!removable(Some(&failed), "qa", 1, 2_000, rerun("api")));
        }
        // A later attempt started: the failed one's workspace goes.
        let mut retried = ended(StageState::Failed, 2_000);
        let mut next = retried.stages[0].attempts[0].clone();
        next.number = 2;
        next.state = StageState::InProgress;
        retried.stages[0].attempts.push(next);
        assert!(removable(Some(&retried), "qa", 1, 2_000, KEEP_NONE));
        assert!(!removable(Some(&retried), "qa", 2, 2_000, KEEP_NONE));
    }

    #[cfg(unix)]
    #[test]
    fn removal_never_follows_a_link_out_of_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("deep")).unwrap();
        std::fs::write(outside.join("keep.txt"), "mine").unwrap();
        std::fs::write(outside.join("deep/keep.txt"), "mine").unwrap();
        let workspace = dir.path().join("workspaces/web-1/qa/1");
        std::fs::create_dir_all(workspace.join("sub")).unwrap();
        std::fs::write(workspace.join("sub/built.txt"), "x").unwrap();
        // Links a task could have made: to a directory, to a file, dangling, nested.
        std::os::unix::fs::symlink(&outside, workspace.join("to-dir")).unwrap();
        std::os::unix::fs::symlink(outside.join("keep.txt"), workspace.join("to-file")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", workspace.join("dangling")).unwrap();
        std::os::unix::fs::symlink(outside.join("deep"), workspace.join("sub/deep")).unwrap();
        remove(&workspace).unwrap();
        assert!(!workspace.exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("keep.txt")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("deep/keep.txt")).unwrap(),
            "mine"
        );
        // A workspace that is itself a link: the link goes, its target stays.
        let linked = dir.path().join("workspaces/web-2");
        std::os::unix::fs::symlink(&outside, &linked).unwrap();
        remove(&linked).unwrap();
        assert!(std::fs::symlink_metadata(&linked).is_err());
        assert!(outside.join("deep/keep.txt").exists());
        // Nothing there is no error.
        remove(&workspace).unwrap();
    }
}
