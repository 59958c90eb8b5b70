//! The live view of `sluice run` on a terminal: one line per stage — its state, the task
//! running and its progress — redrawn in place. Warnings and errors from tasks, and every
//! committed step, print above the stage lines. Off a terminal, plain lines are printed instead.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sluice::core::{Release, StageState, TaskState};
use sluice::scheduler::Observer;
use sluice::store::LogKey;
use sluice::types::{Escaped, Level, LogEvent};

/// Stage lines on a terminal.
pub(super) struct Live {
    multi: MultiProgress,
    stages: Mutex<HashMap<String, ProgressBar>>,
}

impl Live {
    pub(super) fn new() -> Self {
        Self {
            multi: MultiProgress::new(),
            stages: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` (a prompt, say) with the live view cleared from the terminal.
    pub(super) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    fn bar(&self, stage: &str) -> ProgressBar {
        let mut stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        stages
            .entry(stage.to_owned())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(100));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:<16} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_prefix(stage.to_owned());
                bar
            })
            .clone()
    }
}

fn symbol(state: StageState) -> &'static str {
    match state {
        StageState::NotStarted => "·",
        StageState::Succeeded => "✔",
        StageState::PartiallySucceeded => "◐",
        StageState::Failed | StageState::Rejected => "✘",
        StageState::Canceled | StageState::Skipped => "–",
        _ => "▸",
    }
}

impl Observer for Live {
    fn committed(&self, release: &Release, what: &str) {
        self.multi
            .suspend(|| println!("[{}] {}", release.name, Escaped(what)));
        for stage in &release.stages {
            let state = stage.state();
            let detail = stage
                .attempts
                .last()
                .and_then(|a| a.tasks.iter().find(|t| t.state == TaskState::Running))
                .map(|t| format!("  {}", t.name))
                .unwrap_or_default();
            let state_name = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            self.bar(&stage.name)
                .set_message(format!("{} {state_name}{detail}", symbol(state)));
        }
    }

    fn task_event(&self, key: &LogKey<'_>, event: &LogEvent) {
        let (release, stage, task) = (key.release, key.stage, key.task);
        match event {
            LogEvent::Line(line) if line.level >= Level::Warn => {
                self.multi.suspend(|| {
                    println!(
                        "[{release}] {stage}/{task} {}",
                        line.to_string().trim_start()
                    )
                });
            }
            LogEvent::Line(line) => {
                self.bar(stage)
                    .set_message(format!("▸ in-progress  {task}: {}", Escaped(&line.message)));
            }
            LogEvent::Progress { percent, message } => {
                self.bar(stage).set_message(format!(
                    "▸ in-progress  {task} {percent:>3}% {}",
                    Escaped(message)
                ));
            }
        }
    }
}
