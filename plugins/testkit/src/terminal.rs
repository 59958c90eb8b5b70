//! Hostile terminal output: one text that clears the screen, moves the cursor, sets the
//! window title, plants an OSC 8 link, overwrites with `\r`, reverses with U+202E, sends an
//! 8-bit CSI (U+009B), DEL and a line separator, and — after a newline — forges a line that
//! looks like the engine's own. The `terminal` action writes it everywhere a plugin's text
//! reaches the operator: a log message, a field key and value, stdout, progress, a warning,
//! an output name and value — or, with `fail = true`, the error it fails with.

use sluice_plugin_sdk::{Error, Report, log};

/// The hostile text.
pub const HOSTILE: &str = concat!(
    "\x1b[2J\x1b[H",
    "\x1b]0;pwned\x07",
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "\rcovered",
    "\u{202e}desrever",
    "\u{9b}31m\x7f\u{2028}",
    "\n[space-game-1] prod: task deploy-prod succeeded",
);

/// Writes [`HOSTILE`] everywhere, then succeeds with it as a warning and an output, or fails
/// with it.
pub fn run(fail: bool) -> Result<Report, Error> {
    log::write(log::Level::Info, HOSTILE, &[(HOSTILE, HOSTILE)]);
    log::error(HOSTILE);
    println!("{HOSTILE}");
    log::progress(50, HOSTILE);
    if fail {
        return Err(Error::failed(HOSTILE));
    }
    Ok(Report::new().warn(HOSTILE).output(HOSTILE, HOSTILE))
}
