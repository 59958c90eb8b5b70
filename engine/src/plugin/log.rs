//! A call's log: the `sluice:plugin/log` import, the plugin's stdout and stderr (as log lines),
//! and host notes. Lines are masked (secrets), bounded (the log limit) and forwarded live to an
//! optional sink. A panic message on stderr is remembered so a later trap reads as a panic.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::bindings::{log as wit, types};
use super::sandbox::State;
use crate::types::{Level, LogEvent, LogLine, Source};
use crate::types::{LimitExceeded, LimitKind, format_bytes};

/// Receives a call's log events as they happen.
pub type LogSink = Arc<dyn Fn(&LogEvent) + Send + Sync>;

/// Longest single line kept; longer lines are cut (and still count in full toward the limit).
const MAX_LINE: usize = 16 << 10;

/// The log of one call, shared by the store, the stdout/stderr streams and the caller.
pub(crate) struct TaskLog {
    started: Instant,
    limit: u64,
    mask: Vec<String>,
    sink: Option<LogSink>,
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    lines: Vec<LogLine>,
    bytes: u64,
    /// Unterminated output per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
    limit_hit: Option<LimitExceeded>,
    /// Reading a Rust panic message from stderr: its location, and the message so far.
    panic: Option<(String, String)>,
    in_panic: bool,
}

impl TaskLog {
    pub(crate) fn new(limit: u64, mask: Vec<String>, sink: Option<LogSink>) -> Self {
        Self {
            started: Instant::now(),
            limit,
            mask: mask.into_iter().filter(|s| !s.is_empty()).collect(),
            sink,
            state: Mutex::new(LogState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A poisoned lock only means another thread panicked mid-push; the lines are still valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a line, masking secrets; refuses it once the log limit is reached.
    pub(crate) fn push(
        &self,
        level: Level,
        source: Source,
        message: &str,
        fields: Vec<(String, String)>,
    ) -> Result<(), LimitExceeded> {
        let mut state = self.lock();
        if let Some(hit) = &state.limit_hit {
            return Err(hit.clone());
        }
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        state.bytes += size as u64;
        if state.bytes > self.limit {
            let hit = LimitExceeded::new(LimitKind::Log, format_bytes(self.limit));
            state.limit_hit = Some(hit.clone());
            return Err(hit);
        }
        let line = LogLine {
            at: self.started.elapsed(),
            level,
            source,
            message: self.masked(truncate(message)),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k, self.masked(truncate(&v))))
                .collect(),
        };
        if let Some(sink) = &self.sink {
            sink(&LogEvent::Line(line.clone()));
        }
        state.lines.push(line);
        Ok(())
    }

    /// A note from the host about the plugin (not counted against the plugin's log limit).
    pub(crate) fn host_note(&self, level: Level, message: &str) {
        let line = LogLine {
            at: self.started.elapsed(),
            level,
            source: Source::Host,
            message: self.masked(message),
            fields: Vec::new(),
        };
        if let Some(sink) = &self.sink {
            sink(&LogEvent::Line(line.clone()));
        }
        self.lock().lines.push(line);
    }

    /// Whether `text` contains a secret.
    pub(crate) fn reveals_secret(&self, text: &str) -> bool {
        self.mask
            .iter()
            .any(|secret| text.contains(secret.as_str()))
    }

    fn progress(&self, percent: u8, message: &str) {
        if let Some(sink) = &self.sink {
            sink(&LogEvent::Progress {
                percent: percent.min(100),
                message: self.masked(truncate(message)),
            });
        }
    }

    pub(crate) fn masked(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.mask {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }

    /// Feeds raw stdout/stderr bytes; complete lines become log lines.
    fn write_stream(&self, source: Source, bytes: &[u8]) -> Result<(), LimitExceeded> {
        let index = usize::from(source == Source::Stderr);
        let mut complete = Vec::new();
        {
            let mut state = self.lock();
            let partial = &mut state.partial[index];
            partial.extend_from_slice(bytes);
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                complete.push(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            // An endless line without a newline still counts toward the limit.
            if partial.len() > MAX_LINE {
                let line: Vec<u8> = std::mem::take(partial);
                complete.push(String::from_utf8_lossy(&line).into_owned());
            }
        }
        for line in complete {
            self.stream_line(source, &line)?;
        }
        Ok(())
    }

    fn stream_line(&self, source: Source, line: &str) -> Result<(), LimitExceeded> {
        let level = if source == Source::Stderr {
            self.watch_for_panic(line);
            Level::Warn
        } else {
            Level::Info
        };
        self.push(level, source, line, Vec::new())
    }

    /// Rust's default panic hook writes `thread '..' panicked at FILE:LINE:COL:` then the message.
    fn watch_for_panic(&self, line: &str) {
        let mut state = self.lock();
        if let Some(at) = line.split(" panicked at ").nth(1) {
            state.panic = Some((at.trim_end_matches(':').to_owned(), String::new()));
            state.in_panic = true;
        } else if state.in_panic {
            if line.starts_with("note: ") {
                state.in_panic = false;
            } else if let Some((_, message)) = state.panic.as_mut() {
                if !message.is_empty() {
                    message.push('\n');
                }
                message.push_str(line);
            }
        }
    }

    /// Flushes unterminated stdout/stderr output as final lines.
    pub(crate) fn finish(&self) {
        let partial = {
            let mut state = self.lock();
            [
                std::mem::take(&mut state.partial[0]),
                std::mem::take(&mut state.partial[1]),
            ]
        };
        for (bytes, source) in partial.iter().zip([Source::Stdout, Source::Stderr]) {
            if !bytes.is_empty() {
                let _ = self.stream_line(source, &String::from_utf8_lossy(bytes));
            }
        }
    }

    pub(crate) fn limit_hit(&self) -> Option<LimitExceeded> {
        self.lock().limit_hit.clone()
    }

    /// The panic the plugin reported on stderr, as `message (at FILE:LINE:COL)`.
    pub(crate) fn panic(&self) -> Option<String> {
        self.lock().panic.clone().map(|(at, message)| {
            let message = self.masked(&message);
            if message.is_empty() {
                format!("at {at}")
            } else {
                format!("{message} (at {at})")
            }
        })
    }

    pub(crate) fn take_lines(&self) -> Vec<LogLine> {
        std::mem::take(&mut self.lock().lines)
    }
}

fn truncate(text: &str) -> &str {
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
        self.log.progress(percent, &message);
        Ok(())
    }
}

/// The plugin's stdout or stderr: bytes become log lines of the call.
#[derive(Clone)]
pub(crate) struct LogStream {
    pub(crate) log: Arc<TaskLog>,
    pub(crate) source: Source,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.log
                .write_stream(self.source, buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_volume_bounded() {
        let log = TaskLog::new(40, vec!["hunter2".into()], None);
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
    fn stderr_panic_is_recognised() {
        let log = TaskLog::new(1 << 20, vec![], None);
        log.write_stream(
            Source::Stderr,
            b"\nthread '<unnamed>' panicked at src/lib.rs:7:9:\nboom\nnote: run with",
        )
        .unwrap();
        log.finish();
        assert_eq!(log.panic().as_deref(), Some("boom (at src/lib.rs:7:9)"));
    }

    #[test]
    fn partial_lines_are_joined() {
        let log = TaskLog::new(1 << 20, vec![], None);
        log.write_stream(Source::Stdout, b"hel").unwrap();
        log.write_stream(Source::Stdout, b"lo\nwor").unwrap();
        log.finish();
        let lines: Vec<_> = log.take_lines().into_iter().map(|l| l.message).collect();
        assert_eq!(lines, ["hello", "wor"]);
    }
}
