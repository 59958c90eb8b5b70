//! Hostile actions against the log and output limits and the masking of secrets: floods of
//! empty items (lines, fields, progress reports, outputs, warnings), stdout written past the
//! limit with the errors ignored, secrets placed where masking used to miss them, an exit, and
//! a value the component ABI forbids.

use std::io::Write as _;

use sluice_plugin_sdk::{Error, Report, log};

/// `count` empty log lines (no message, no fields).
pub fn empty_lines(count: u64) -> Result<Report, Error> {
    for _ in 0..count {
        log::write(log::Level::Info, "", &[]);
    }
    Ok(Report::new())
}

/// `lines` log lines of `fields` empty fields each.
pub fn empty_fields(lines: u64, fields: usize) -> Result<Report, Error> {
    let empty = vec![("", ""); fields];
    for _ in 0..lines {
        log::write(log::Level::Info, "", &empty);
    }
    Ok(Report::new())
}

/// `count` progress reports with an empty message.
pub fn progress(count: u64) -> Result<Report, Error> {
    for i in 0..count {
        log::progress((i % 101) as u8, "");
    }
    Ok(Report::new())
}

/// `count` lines of `size` bytes to stdout, ignoring every write error, then success.
pub fn stdout_ignoring_errors(count: u64, size: usize) -> Result<Report, Error> {
    let line = "i".repeat(size);
    let mut refused = 0u64;
    for _ in 0..count {
        let mut out = std::io::stdout();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            refused += 1;
        }
    }
    Ok(Report::new().output("refused", refused.to_string()))
}

/// `count` empty outputs and `warnings` empty warnings.
pub fn empty_items(outputs: u64, warnings: u64) -> Result<Report, Error> {
    let mut report = Report::new();
    for _ in 0..outputs {
        report = report.output("", "");
    }
    for _ in 0..warnings {
        report = report.warn("");
    }
    Ok(report)
}

/// One log line with `message` and `fields`, then (unless empty) `output` as an output
/// variable named by its first element, and `text` written to stdout in `chunk`-byte writes.
pub fn say(
    message: &str,
    fields: &[(String, String)],
    output: Option<(String, String)>,
    text: &str,
    chunk: usize,
) -> Result<Report, Error> {
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    log::write(log::Level::Info, message, &fields);
    let mut out = std::io::stdout();
    for piece in text.as_bytes().chunks(chunk.max(1)) {
        out.write_all(piece)
            .and_then(|()| out.flush())
            .map_err(|e| Error::failed(format!("cannot write to stdout: {e}")))?;
    }
    let mut report = Report::new();
    if let Some((name, value)) = output {
        report = report.output(name, value);
    }
    Ok(report)
}

/// Exits through WASI with `status`, instead of returning.
pub fn exit(status: i32) -> Result<Report, Error> {
    std::process::exit(status)
}

/// Calls the log import with a message that is not UTF-8: the host must refuse it as a broken
/// ABI, not take it for its own fault. (Unsafe by nature: the SDK's bindings cannot send it.)
#[allow(unsafe_code)]
pub fn bad_utf8() -> Result<Report, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        #[link(wasm_import_module = "sluice:plugin/log@0.1.0")]
        unsafe extern "C" {
            #[link_name = "log"]
            fn raw_log(level: i32, ptr: *const u8, len: usize, fields: *const u8, count: usize);
        }
        let bytes = [0xff_u8, 0xfe, 0xfd];
        // SAFETY: the pointers are valid for the lengths given; the bytes are merely not UTF-8.
        unsafe { raw_log(2, bytes.as_ptr(), bytes.len(), std::ptr::null(), 0) };
    }
    Ok(Report::new().output("accepted", "the host took a string that is not UTF-8"))
}
