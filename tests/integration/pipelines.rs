//! Pipeline snapshot tests: `tests/pipelines/valid/*.toml` -> the plan in `*.plan.json`,
//! `tests/pipelines/invalid/*.toml` -> the exact error text in `*.err`.
//! Run with `SLUICE_BLESS=1` to rewrite the snapshots after an intended change, then review
//! the diff.

use std::path::{Path, PathBuf};

use sluice::pipeline::{self, PipelineError};

use crate::support::host;

fn cases(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/pipelines")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {kind} cases");
    files
}

/// Parses as `sluice validate` would, from a fixed directory so snapshots are portable.
fn check(path: &Path) -> Result<pipeline::Plan, PipelineError> {
    let source = std::fs::read_to_string(path).unwrap();
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let loaded = pipeline::parse(&file, &source, Path::new("/pipelines"), &stem)?;
    pipeline::check_plugins(&loaded, host())?;
    Ok(loaded.plan)
}

fn compare(actual: &str, expected_path: &Path) {
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(expected_path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(expected_path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {} (run with SLUICE_BLESS=1)",
            expected_path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "snapshot {} differs",
        expected_path.display()
    );
}

#[test]
fn valid_pipelines_plan_as_recorded() {
    for path in cases("valid") {
        let plan =
            check(&path).unwrap_or_else(|e| panic!("{} should be valid:\n{e}", path.display()));
        let json = serde_json::to_string_pretty(&plan).unwrap() + "\n";
        compare(&json, &path.with_extension("plan.json"));
    }
}

#[test]
fn invalid_pipelines_fail_with_the_recorded_errors() {
    for path in cases("invalid") {
        let err = check(&path).expect_err(&format!("{} should be invalid", path.display()));
        compare(&format!("{err}\n"), &path.with_extension("err"));
    }
}
