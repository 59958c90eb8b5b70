//! What the service watches the engine for (pending approvals, task times), and following a
//! task's log while it runs. The store holds a task's log from the commit that
//! records the task's end; until then its lines live here, kept from the first line on, so a
//! follower that arrives late still sees the whole log. An entry goes when its task ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

use crate::core::{Release, TaskState};
use crate::scheduler::{Engine, Observer};
use crate::store::LogKey;
use crate::types::{LogEvent, LogLine};

use super::approvals::PendingIndex;
use super::metrics::TaskTimes;
use super::{InternalError, ServiceError};

/// (release, stage, attempt, task).
pub(super) type TaskKey = (String, String, u32, String);

fn owned(key: &LogKey<'_>) -> TaskKey {
    (
        key.release.to_owned(),
        key.stage.to_owned(),
        key.attempt,
        key.task.to_owned(),
    )
}

/// The lines of one task that has not ended yet.
#[derive(Default)]
struct LiveLog {
    lines: Mutex<Vec<LogLine>>,
    /// Set when the task ended: its log is in the store from then on.
    ended: AtomicBool,
    /// Bumped on every line and at the end.
    changed: watch::Sender<()>,
}

impl LiveLog {
    fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.changed.send_replace(());
    }
}

/// Live logs of the tasks that have not ended, by task; and the stored logs being followed,
/// one copy each however many follow it (gone with their last follower).
#[derive(Default)]
pub(super) struct LiveLogs(
    Mutex<HashMap<TaskKey, Arc<LiveLog>>>,
    Mutex<HashMap<TaskKey, Weak<Vec<LogLine>>>>,
);

impl LiveLogs {
    fn entry(&self, key: TaskKey) -> Arc<LiveLog> {
        let mut logs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        logs.entry(key).or_default().clone()
    }

    /// The stored log of `key`, shared with its other followers; read from `engine`'s store
    /// when no one follows it.
    fn stored(
        &self,
        engine: &Engine,
        key: &TaskKey,
    ) -> Result<Option<Arc<Vec<LogLine>>>, ServiceError> {
        let mut shared = self.1.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lines) = shared.get(key).and_then(Weak::upgrade) {
            return Ok(Some(lines));
        }
        let (release, stage, attempt, task) = key;
        let log = LogKey {
            release,
            stage,
            attempt: *attempt,
            task,
        };
        let Some(lines) = engine.store().log(&log).map_err(InternalError::Store)? else {
            return Ok(None);
        };
        let lines = Arc::new(lines);
        shared.retain(|_, lines| lines.strong_count() > 0);
        shared.insert(key.clone(), Arc::downgrade(&lines));
        Ok(Some(lines))
    }
}

/// What the service watches the engine for: pending approvals and live logs.
pub(super) struct Watch {
    pub(super) pending: Arc<PendingIndex>,
    pub(super) live: Arc<LiveLogs>,
    pub(super) times: Arc<TaskTimes>,
    /// Bumped after each commit has been taken into the service's views.
    pub(super) changed: Arc<watch::Sender<u64>>,
}

impl Observer for Watch {
    fn committed(&self, release: &Release, what: &str) {
        self.pending.committed(release, what);
        self.times.committed(release);
        self.changed.send_modify(|n| *n += 1);
        let mut logs = self.live.0.lock().unwrap_or_else(|e| e.into_inner());
        logs.retain(|key, log| {
            if key.0 != release.name || over(release, key) == Some(false) {
                return true;
            }
            log.end();
            false
        });
    }

    fn task_event(&self, key: &LogKey<'_>, event: &LogEvent) {
        if let LogEvent::Line(line) = event {
            let log = self.live.entry(owned(key));
            log.lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.clone());
            log.changed.send_replace(());
        }
    }
}

/// Whether the task has ended (or can no longer run: its attempt is over); `None` when the
/// release has no such task.
fn over(release: &Release, (_, stage, attempt, task): &TaskKey) -> Option<bool> {
    let stage = release.stages.iter().find(|s| &s.name == stage)?;
    let attempt = stage.attempts.iter().find(|a| a.number == *attempt)?;
    let task = attempt.tasks.iter().find(|t| &t.name == task)?;
    Some(
        attempt.finished_at.is_some()
            || !matches!(task.state, TaskState::Pending | TaskState::Running),
    )
}

/// A task's log, line by line: what is there now, then each line as the task writes it, until
/// the task ends.
pub struct LogFollow {
    key: TaskKey,
    engine: Arc<Engine>,
    live: Arc<LiveLogs>,
    sent: usize,
    source: Source,
}

enum Source {
    Stored(Arc<Vec<LogLine>>),
    Live(Arc<LiveLog>, watch::Receiver<()>),
}

impl LogFollow {
    pub(super) fn start(
        live: &Arc<LiveLogs>,
        engine: &Arc<Engine>,
        release: &Release,
        key: &LogKey<'_>,
    ) -> Result<Self, ServiceError> {
        let key = owned(key);
        let over = over(release, &key).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "release {} has no task `{}` in attempt {} of stage `{}`",
                key.0, key.3, key.2, key.1
            ))
        })?;
        // Registered before the store is read: if the task ends after the read, its commit
        // finds this entry and ends it.
        let log = (!over).then(|| live.entry(key.clone()));
        let mut follow = Self {
            key,
            engine: engine.clone(),
            live: live.clone(),
            sent: 0,
            source: Source::Stored(Arc::default()),
        };
        match (follow.stored()?, log) {
            (Some(lines), log) => {
                if log.is_some() {
                    // The task ended between the two reads: its commit has passed, so no one
                    // else waits on the entry made above.
                    live.0
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&follow.key);
                }
                follow.source = Source::Stored(lines);
            }
            (None, Some(log)) => {
                let changed = log.changed.subscribe();
                follow.source = Source::Live(log, changed);
            }
            // Ended without a log (skipped).
            (None, None) => {}
        }
        Ok(follow)
    }

    fn stored(&self) -> Result<Option<Arc<Vec<LogLine>>>, ServiceError> {
        self.live.stored(&self.engine, &self.key)
    }

    /// How many lines were returned (or skipped): the number of the last line returned.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Carries on after line `lines` (a reconnecting follower's last): the lines up to it are
    /// not returned again.
    pub fn resume_after(&mut self, lines: usize) {
        self.sent = self.sent.max(lines);
    }

    /// The next line, waiting for the task to write it; `None` once the task has ended and
    /// every line was returned.
    pub async fn next(&mut self) -> Result<Option<LogLine>, ServiceError> {
        loop {
            match &mut self.source {
                Source::Stored(lines) => {
                    let line = lines.get(self.sent).cloned();
                    self.sent += usize::from(line.is_some());
                    return Ok(line);
                }
                Source::Live(log, changed) => {
                    let line = {
                        let lines = log.lines.lock().unwrap_or_else(|e| e.into_inner());
                        lines.get(self.sent).cloned()
                    };
                    if let Some(line) = line {
                        self.sent += 1;
                        return Ok(Some(line));
                    }
                    if log.ended.load(Ordering::SeqCst) {
                        // The stored log is the whole of it; carry on from where we are.
                        self.source = Source::Stored(self.stored()?.unwrap_or_default());
                        continue;
                    }
                    if changed.changed().await.is_err() {
                        return Ok(None);
                    }
                }
            }
        }
    }
}
