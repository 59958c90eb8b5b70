//! A call's log: the `sluice:plugin/log` import, the plugin's stdout and stderr (as log lines,
//! through `stdio.rs`), and host notes. Lines are masked (secrets, before anything is cut), bounded (the log limit:
//! every line, field and progress report costs its bytes plus [`ITEM_OVERHEAD`]) and forwarded
//! live to an optional sink. A panic message on stderr is remembered so a later trap reads as a
//! panic.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::bindings::{log as wit, types};
use super::mask::Masker;
use super::sandbox::State;
pub(crate) use super::stdio::LogStream;
use crate::types::limits::item_cost;
use crate::types::{Level, LogEvent, LogLine, Source};
use crate::types::{LimitExceeded, LimitKind, format_bytes};

/// Receives a call's log events as they happen.
pub type LogSink = Arc<dyn Fn(&LogEvent) + Send + Sync>;

/// Longest single line (or field key, or value) kept; longer ones are cut — after masking —
/// and still count in full toward the limit.
pub(crate) const MAX_LINE: usize = 16 << 10;

/// Host notes about one call (a denied request, say) kept at most: the plugin can provoke
/// them, and they are not counted against its log limit, so they are bounded here.
const MAX_HOST_NOTES: usize = 100;

/// The log of one call, shared by the store, the stdout/stderr streams and the caller.
pub(crate) struct TaskLog {
    started: Instant,
    limit: u64,
    mask: Masker,
    sink: Option<LogSink>,
    state: Mutex<LogState>,
}

#[derive(Default)]
pub(super) struct LogState {
    lines: Vec<LogLine>,
    /// What the plugin's lines, fields, progress reports and stream bytes cost so far.
    cost: u64,
    /// Unterminated output per stream (stdout, stderr), already counted toward the limit.
    pub(super) partial: [Vec<u8>; 2],
    limit_hit: Option<LimitExceeded>,
    notes: usize,
    /// Reading a Rust panic message from stderr: its location, and the message so far.
    pub(super) panic: Option<(String, String)>,
    pub(super) in_panic: bool,
    /// What a Python or JavaScript runtime said about an uncaught error.
    pub(super) guest: super::guest::GuestWatch,
}

impl TaskLog {
    pub(crate) fn new(limit: u64, mask: Vec<String>, sink: Option<LogSink>) -> Self {
        Self {
            started: Instant::now(),
            limit,
            mask: Masker::new(mask),
            sink,
            state: Mutex::new(LogState::default()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, LogState> {
        // A poisoned lock only means another thread panicked mid-push; the lines are still valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `cost` toward the log limit; once over it, this and every later call is refused.
    pub(super) fn charge(&self, state: &mut LogState, cost: u64) -> Result<(), LimitExceeded> {
        if let Some(hit) = &state.limit_hit {
            return Err(hit.clone());
        }
        state.cost = state.cost.saturating_add(cost);
        if state.cost > self.limit {
            let hit = LimitExceeded::new(LimitKind::Log, format_bytes(self.limit));
            state.limit_hit = Some(hit.clone());
            return Err(hit);
        }
        Ok(())
    }

    /// Appends a line, masking secrets; refuses it once the log limit is reached. The line
    /// costs its message plus [`ITEM_OVERHEAD`], and each field its key and value plus as much.
    pub(crate) fn push(
        &self,
        level: Level,
        source: Source,
        message: &str,
        fields: Vec<(String, String)>,
    ) -> Result<(), LimitExceeded> {
        let cost = fields.iter().fold(item_cost(message.len()), |sum, (k, v)| {
            sum.saturating_add(item_cost(k.len().saturating_add(v.len())))
        });
        self.charge(&mut self.lock(), cost)?;
        self.record(level, source, message, &fields);
        Ok(())
    }

    /// Stores and forwards a line already counted: masked first, then cut.
    pub(super) fn record(
        &self,
        level: Level,
        source: Source,
        message: &str,
        fields: &[(String, String)],
    ) {
        let line = LogLine {
            at: self.started.elapsed(),
            level,
            source,
            message: self.kept(message),
            fields: fields
                .iter()
                .map(|(k, v)| (self.kept(k), self.kept(v)))
                .collect(),
        };
        if let Some(sink) = &self.sink {
            sink(&LogEvent::Line(line.clone()));
        }
        self.lock().lines.push(line);
    }

    /// What is kept of a text: masked over its whole length, then cut to [`MAX_LINE`].
    fn kept(&self, text: &str) -> String {
        truncate(&self.mask.mask(text)).to_owned()
    }

    /// A note from the host about the plugin: not counted against the plugin's log limit, but
    /// at most [`MAX_HOST_NOTES`] of them (then one saying the rest were left out).
    pub(crate) fn host_note(&self, level: Level, message: &str) {
        let message = {
            let mut state = self.lock();
            state.notes = state.notes.saturating_add(1);
            match state.notes {
                n if n <= MAX_HOST_NOTES => self.kept(message),
                n if n == MAX_HOST_NOTES + 1 => {
                    format!("more than {MAX_HOST_NOTES} host notes; the rest are left out")
                }
                _ => return,
            }
        };
        let line = LogLine {
            at: self.started.elapsed(),
            level,
            source: Source::Host,
            message,
            fields: Vec::new(),
        };
        if let Some(sink) = &self.sink {
            sink(&LogEvent::Line(line.clone()));
        }
        self.lock().lines.push(line);
    }

    /// Whether `text` contains a secret.
    pub(crate) fn reveals_secret(&self, text: &str) -> bool {
        self.mask.reveals(text)
    }

    /// A progress report costs its message plus [`ITEM_OVERHEAD`], like a line.
    fn progress(&self, percent: u8, message: &str) -> Result<(), LimitExceeded> {
        self.charge(&mut self.lock(), item_cost(message.len()))?;
        if let Some(sink) = &self.sink {
            sink(&LogEvent::Progress {
                percent: percent.min(100),
                message: self.kept(message),
            });
        }
        Ok(())
    }

    /// `text` with every secret masked, whole (for what the call returns).
    pub(crate) fn masked(&self, text: &str) -> String {
        self.mask.mask(text).into_owned()
    }

    pub(crate) fn limit_hit(&self) -> Option<LimitExceeded> {
        self.lock().limit_hit.clone()
    }

    /// A text of the plugin's made fit for a failure's message: masked, on one line (control
    /// characters escaped, so it cannot forge lines of its own), and cut to [`MAX_LINE`].
    pub(crate) fn one_line(&self, text: &str) -> String {
        let masked = self.mask.mask(text);
        let mut line = String::with_capacity(masked.len().min(MAX_LINE));
        for c in masked.chars() {
            if line.len() >= MAX_LINE {
                line.push_str(" [cut]");
                break;
            }
            if c.is_control() {
                line.extend(c.escape_default());
            } else {
                line.push(c);
            }
        }
        line
    }

    pub(crate) fn take_lines(&self) -> Vec<LogLine> {
        std::mem::take(&mut self.lock().lines)
    }
}

pub(crate) fn truncate(text: &str) -> &str {
    if text.len() <= MAX_LINE {
        return text;
    }
    let mut end = MAX_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl types::Host for State {}

impl wit::Host for State {
    fn log(
        &mut self,
        level: wit::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.log
            .push(level.into(), Source::Plugin, &message, fields)
            .map_err(wasmtime::Error::new)
    }

    fn progress(&mut self, percent: u8, message: String) -> wasmtime::Result<()> {
        self.log
            .progress(percent, &message)
            .map_err(wasmtime::Error::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::limits::ITEM_OVERHEAD;

    #[test]
    fn secrets_are_masked_and_volume_bounded() {
        let log = TaskLog::new(40 + ITEM_OVERHEAD, vec!["hunter2".into()], None);
        log.push(Level::Info, Source::Plugin, "password is hunter2", vec![])
            .unwrap();
        let err = log
            .push(Level::Info, Source::Plugin, &"x".repeat(30), vec![])
            .unwrap_err();
        assert_eq!(err.kind, LimitKind::Log);
        let lines = log.take_lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].message, "password is ***");
    }

    #[test]
    fn empty_lines_fields_and_progress_cost_the_overhead() {
        let log = TaskLog::new(4 * ITEM_OVERHEAD, vec![], None);
        log.push(Level::Info, Source::Plugin, "", vec![]).unwrap();
        let field = (String::new(), String::new());
        log.push(Level::Info, Source::Plugin, "", vec![field.clone()])
            .unwrap();
        log.progress(5, "").unwrap();
        let err = log
            .push(Level::Info, Source::Plugin, "", vec![field])
            .unwrap_err();
        assert_eq!(err.kind, LimitKind::Log);
        assert_eq!(log.progress(6, "").unwrap_err().kind, LimitKind::Log);
        assert_eq!(log.take_lines().len(), 2);
    }

    #[test]
    fn host_notes_are_bounded() {
        let log = TaskLog::new(0, vec!["hunter2".into()], None);
        for _ in 0..MAX_HOST_NOTES * 3 {
            log.host_note(Level::Warn, "denied hunter2");
        }
        let lines = log.take_lines();
        assert_eq!(lines.len(), MAX_HOST_NOTES + 1);
        assert_eq!(lines[0].message, "denied ***");
        assert!(lines[MAX_HOST_NOTES].message.contains("left out"));
    }

    #[test]
    fn failure_text_is_one_masked_line() {
        let log = TaskLog::new(0, vec!["hunter2".into()], None);
        assert_eq!(
            log.one_line("a\nb\thunter2\u{1b}[2J"),
            "a\\nb\\t***\\u{1b}[2J"
        );
        assert!(log.one_line(&"x".repeat(MAX_LINE * 2)).ends_with(" [cut]"));
    }
}
