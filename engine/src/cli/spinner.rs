//! What the CLI shows while a plugin compiles (seconds for a Python or JavaScript component):
//! after a moment without a result, the plugin's name and size and a spinner on a terminal, or
//! one line when stderr is not a terminal. Nothing at all when the result comes quickly (a
//! cached compilation).

use std::io::{IsTerminal as _, Write as _};
use std::sync::mpsc;
use std::time::Duration;

/// How long a call may take before anything is shown.
const QUIET: Duration = Duration::from_millis(300);
const FRAMES: [char; 4] = ['|', '/', '-', '\\'];

/// Runs `work`, showing `compiling WHAT` on stderr while it takes longer than a moment.
pub(super) fn while_compiling<T>(what: &str, work: impl FnOnce() -> T) -> T {
    let (done, wait) = mpsc::channel::<()>();
    let what = what.to_owned();
    let shower = std::thread::spawn(move || {
        if wait.recv_timeout(QUIET) != Err(mpsc::RecvTimeoutError::Timeout) {
            return;
        }
        let mut stderr = std::io::stderr();
        if !stderr.is_terminal() {
            let _ = writeln!(stderr, "compiling {what} ...");
            return;
        }
        let started = std::time::Instant::now();
        for frame in FRAMES.iter().cycle() {
            let _ = write!(
                stderr,
                "\r{frame} compiling {what} ({:.0}s)",
                started.elapsed().as_secs_f64()
            );
            let _ = stderr.flush();
            if wait.recv_timeout(Duration::from_millis(120)) != Err(mpsc::RecvTimeoutError::Timeout)
            {
                break;
            }
        }
        let _ = write!(stderr, "\r\x1b[2K");
    });
    let result = work();
    let _ = done.send(());
    let _ = shower.join();
    result
}

/// `NAME (18.4 MB)` for a plugin reference: its file name and size, or the built-in's name.
pub(super) fn describe(reference: &str, cwd: &std::path::Path) -> String {
    let path = cwd.join(reference);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => {
            let name = path.file_name().map_or_else(
                || reference.to_owned(),
                |n| n.to_string_lossy().into_owned(),
            );
            format!("{name} ({:.1} MB)", meta.len() as f64 / 1e6)
        }
        _ => reference.to_owned(),
    }
}
