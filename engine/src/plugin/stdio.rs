//! The plugin's stdout and stderr as log lines of its call: bytes count toward the log limit as
//! they arrive, a line is kept whole until its newline (so it is masked whole before it is
//! cut), and a Rust panic message on stderr is remembered so that a later trap reads as a panic.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::log::TaskLog;
use crate::types::limits::{ITEM_OVERHEAD, item_cost};
use crate::types::{Level, LimitExceeded, Source};

impl TaskLog {
    /// Feeds raw stdout/stderr bytes; complete lines become log lines. Bytes count toward the
    /// limit as they arrive and each completed line costs [`ITEM_OVERHEAD`] more; an
    /// unterminated line is kept whole until its newline (the limit bounds it), so it is
    /// masked whole before it is cut.
    pub(super) fn write_stream(&self, source: Source, bytes: &[u8]) -> Result<(), LimitExceeded> {
        let index = usize::from(source == Source::Stderr);
        let mut complete = Vec::new();
        let result = {
            let mut state = self.lock();
            let mut rest = bytes;
            loop {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        let cost = item_cost(end.saturating_add(1));
                        if let Err(hit) = self.charge(&mut state, cost) {
                            break Err(hit);
                        }
                        let mut line = std::mem::take(&mut state.partial[index]);
                        line.extend_from_slice(&rest[..end]);
                        complete.push(line);
                        rest = &rest[end + 1..];
                    }
                    None if rest.is_empty() => break Ok(()),
                    None => {
                        let charged = self.charge(&mut state, rest.len() as u64);
                        if charged.is_ok() {
                            state.partial[index].extend_from_slice(rest);
                        }
                        break charged;
                    }
                }
            }
        };
        if result.is_err() {
            // Past the limit nothing more is kept, also not what was waiting for a newline.
            self.lock().partial[index] = Vec::new();
        }
        for line in complete {
            self.stream_line(source, &String::from_utf8_lossy(&line));
        }
        result
    }

    fn stream_line(&self, source: Source, line: &str) {
        let level = if source == Source::Stderr {
            self.watch_for_panic(line);
            Level::Warn
        } else {
            Level::Info
        };
        self.record(level, source, line, &[]);
    }
    /// Rust's default panic hook writes `thread '..' panicked at FILE:LINE:COL:` then the message.
    fn watch_for_panic(&self, line: &str) {
        let mut state = self.lock();
        state.guest.line(line);
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

    /// Flushes unterminated stdout/stderr output as final lines (each costs its overhead; its
    /// bytes were counted as they came).
    pub(crate) fn finish(&self) {
        for (index, source) in [Source::Stdout, Source::Stderr].into_iter().enumerate() {
            let bytes = {
                let mut state = self.lock();
                let bytes = std::mem::take(&mut state.partial[index]);
                if bytes.is_empty() || self.charge(&mut state, ITEM_OVERHEAD).is_err() {
                    continue;
                }
                bytes
            };
            self.stream_line(source, &String::from_utf8_lossy(&bytes));
        }
    }

    /// The uncaught Python exception or JavaScript error a runtime reported on stderr, one line
    /// (see [`super::guest`]).
    pub(crate) fn uncaught(&self, unreachable: bool) -> Option<String> {
        let panic = self.panic();
        let found = self.lock().guest.uncaught(panic.as_deref(), unreachable)?;
        Some(self.one_line(&found))
    }

    /// The panic the plugin reported on stderr, as `message (at FILE:LINE:COL)`, one line.
    pub(crate) fn panic(&self) -> Option<String> {
        let (at, message) = self.lock().panic.clone()?;
        Some(self.one_line(&if message.is_empty() {
            format!("at {at}")
        } else {
            format!("{message} (at {at})")
        }))
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
    use crate::plugin::log::MAX_LINE;

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

    #[test]
    fn stream_lines_cost_their_bytes_newline_and_overhead() {
        let log = TaskLog::new(3 * (ITEM_OVERHEAD + 1), vec![], None);
        log.write_stream(Source::Stdout, b"\n\n\n").unwrap();
        assert!(log.write_stream(Source::Stdout, b"\n").is_err());
        assert!(
            log.write_stream(Source::Stdout, b"more").is_err(),
            "refused ever after"
        );
        log.finish();
        assert_eq!(log.take_lines().len(), 3);
        assert!(log.limit_hit().is_some());
    }

    #[test]
    fn a_secret_split_across_stream_writes_is_masked() {
        let log = TaskLog::new(1 << 20, vec!["hunter2".into()], None);
        let text = format!("{}hunter2{}", "a".repeat(MAX_LINE - 3), "b".repeat(10));
        for chunk in text.as_bytes().chunks(1000) {
            log.write_stream(Source::Stdout, chunk).unwrap();
        }
        log.finish();
        let lines = log.take_lines();
        assert_eq!(
            lines.len(),
            1,
            "an unterminated line stays whole until its end"
        );
        assert_eq!(lines[0].message, format!("{}***", "a".repeat(MAX_LINE - 3)));
    }
}
