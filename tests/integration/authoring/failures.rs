//! A Python exception, `sys.exit(3)` and a thrown JavaScript error each read as what happened,
//! never as a fault of the host.

use super::{JS_PROBE, PY_PROBE, js_probe, python_probe, run_plugin};
use crate::support::said;

/// `plugin run` of `mode`: exits 1, and its last line is the failure.
fn failure(built: &super::Built, mode: &str) -> String {
    let run = run_plugin(
        &built.dir,
        &built.component,
        &format!("mode = \"{mode}\""),
        &[],
    );
    assert_eq!(run.status.code(), Some(1), "{}", said(&run));
    let printed = said(&run);
    printed
        .lines()
        .rfind(|l| l.starts_with("failed:"))
        .unwrap_or(&printed)
        .to_owned()
}

/// The 1-based line of `source` holding `text`.
fn line_of(source: &str, text: &str) -> usize {
    source.lines().position(|l| l.contains(text)).unwrap() + 1
}

#[test]
fn a_python_exception_reads_as_its_type_text_and_the_authors_line() {
    let failed = failure(python_probe(), "raise");
    let line = line_of(PY_PROBE, r#"{}["missing"]"#);
    let want =
        format!(r#"failed: plugin failed: "KeyError: 'missing' (at app.py:{line}, in run)""#);
    assert!(failed.starts_with(&want), "{failed}");
}

#[test]
fn sys_exit_3_reads_as_plugin_exited_with_status_3() {
    let failed = failure(python_probe(), "exit");
    assert!(
        failed.starts_with(r#"failed: plugin failed: "plugin exited with status 3""#),
        "{failed}"
    );
}

#[test]
fn a_thrown_javascript_error_reads_as_its_name_message_and_the_authors_line() {
    let failed = failure(js_probe(), "throw");
    let line = line_of(JS_PROBE, "told to throw");
    let want = format!(
        r#"failed: plugin failed: "TypeError: the probe was told to throw (at index.js:{line})""#
    );
    assert!(failed.starts_with(&want), "{failed}");
}
