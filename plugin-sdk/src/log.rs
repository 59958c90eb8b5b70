//! Log lines and progress, written to the task's log on the host.
//!
//! `println!` and `eprintln!` work too (as `info` and `warn` lines); these functions add a level
//! and structured fields. Log volume is bounded per task: a plugin that writes past the bound is
//! stopped and its task fails, naming the limit.

use crate::__private::log as wit;

pub use wit::Level;

/// Writes one log line with a level, a message and key/value fields.
///
/// ```no_run
/// use sluice_plugin_sdk::log::{self, Level};
/// log::write(Level::Info, "copied", &[("files", "12"), ("bytes", "40960")]);
/// ```
pub fn write(level: Level, message: impl AsRef<str>, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wit::log(level, message.as_ref(), &fields);
}

/// Writes an `error` line.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message, &[]);
}

/// Writes a `warn` line.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message, &[]);
}

/// Writes an `info` line.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message, &[]);
}

/// Writes a `debug` line.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message, &[]);
}

/// Reports progress: `percent` from 0 to 100 and what is happening.
pub fn progress(percent: u8, message: impl AsRef<str>) {
    wit::progress(percent.min(100), message.as_ref());
}
