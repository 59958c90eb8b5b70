//! What a guest language's runtime writes on stderr when a plugin fails in a way the plugin
//! does not report itself, read so that the failure says what happened instead of what the
//! runtime did about it:
//! - componentize-py prints the Python traceback of an uncaught exception, then panics with
//!   "Python function threw an unexpected exception": the failure is the exception, with the
//!   innermost frame of the traceback;
//! - componentize-js aborts (`Redirecting call to abort() to mozalloc_abort`, then an
//!   `unreachable` trap) when an export throws a value that is not its WIT error: the failure
//!   says so and how to export the plugin so that any error is reported with its message.

/// The panic message componentize-py's runtime gives an uncaught Python exception.
const PYTHON_PANIC: &str = "Python function threw an unexpected exception";
/// What SpiderMonkey (componentize-js) writes just before it aborts.
const JS_ABORT: &str = "Redirecting call to abort() to mozalloc_abort";

/// What the guest's stderr said so far.
#[derive(Debug, Default)]
pub(super) struct GuestWatch {
    traceback: Option<Traceback>,
    js_abort: bool,
}

#[derive(Debug, Default)]
struct Traceback {
    /// `app.py:12, in run`: the innermost frame.
    place: Option<String>,
    /// `ValueError: bad port`: the line after the frames.
    text: Option<String>,
}

impl GuestWatch {
    /// Reads one stderr line.
    pub(super) fn line(&mut self, line: &str) {
        if line == "Traceback (most recent call last):" {
            // A chained exception starts a traceback of its own: the last one is the one raised.
            self.traceback = Some(Traceback::default());
        } else if line.contains(JS_ABORT) {
            self.js_abort = true;
        } else if let Some(tb) = self.traceback.as_mut().filter(|tb| tb.text.is_none()) {
            if let Some(frame) = line.strip_prefix("  File \"") {
                tb.place = frame_place(frame);
            } else if !line.is_empty() && !line.starts_with(' ') {
                tb.text = Some(line.to_owned());
            }
        }
    }

    /// The uncaught exception to report instead of the runtime's own panic or trap: `panic` is
    /// the panic message read from stderr, `unreachable` whether the call ended in an
    /// `unreachable` trap.
    pub(super) fn uncaught(&self, panic: Option<&str>, unreachable: bool) -> Option<String> {
        if panic.is_some_and(|p| p.contains(PYTHON_PANIC)) {
            let tb = self.traceback.as_ref()?;
            let text = tb.text.as_deref()?;
            return Some(match &tb.place {
                Some(place) => format!("{text} (at {place})"),
                None => text.to_owned(),
            });
        }
        (unreachable && self.js_abort).then(|| {
            "the plugin threw a JavaScript value that is not its WIT error, and componentize-js \
             aborted; export the plugin with sluice/component.js (exportTask, exportGate, \
             exportArtifactSource), which reports any error with its message"
                .to_owned()
        })
    }
}

/// `/0/app.py", line 9, in run` as `app.py:9, in run`.
fn frame_place(frame: &str) -> Option<String> {
    let (path, rest) = frame.split_once("\", line ")?;
    let file = path.rsplit('/').next().unwrap_or(path);
    let (line, function) = match rest.split_once(", in ") {
        Some((line, function)) => (line, Some(function)),
        None => (rest, None),
    };
    Some(match function {
        Some(function) => format!("{file}:{line}, in {function}"),
        None => format!("{file}:{line}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(lines: &[&str]) -> GuestWatch {
        let mut watch = GuestWatch::default();
        for line in lines {
            watch.line(line);
        }
        watch
    }

    #[test]
    fn a_python_traceback_becomes_the_exception_and_its_innermost_frame() {
        let w = watch(&[
            "Traceback (most recent call last):",
            "  File \"/0/app.py\", line 30, in run",
            "    return helper()",
            "  File \"/0/lib/util.py\", line 9, in helper",
            "    raise ValueError(\"bad port\")",
            "ValueError: bad port",
            "",
            "thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:",
        ]);
        assert_eq!(
            w.uncaught(
                Some("Python function threw an unexpected exception (at x)"),
                true
            ),
            Some("ValueError: bad port (at util.py:9, in helper)".to_owned())
        );
        // A Rust panic is a Rust panic, also after a traceback was printed.
        assert_eq!(
            w.uncaught(Some("index out of bounds (at src/lib.rs:3:1)"), false),
            None
        );
    }

    #[test]
    fn the_last_of_chained_tracebacks_is_the_one_raised() {
        let w = watch(&[
            "Traceback (most recent call last):",
            "  File \"/0/app.py\", line 3, in run",
            "KeyError: 'port'",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            "  File \"/0/app.py\", line 5, in run",
            "RuntimeError: no port configured",
        ]);
        assert_eq!(
            w.uncaught(Some(PYTHON_PANIC), false).as_deref(),
            Some("RuntimeError: no port configured (at app.py:5, in run)")
        );
    }

    #[test]
    fn a_js_abort_explains_only_an_unreachable_trap() {
        let w = watch(&["Redirecting call to abort() to mozalloc_abort", ""]);
        assert!(
            w.uncaught(None, true)
                .unwrap()
                .contains("componentize-js aborted")
        );
        assert_eq!(w.uncaught(None, false), None);
        assert_eq!(watch(&["unrelated"]).uncaught(None, true), None);
    }
}
