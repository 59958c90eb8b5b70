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

/// `sluice validate` on a pipeline whose name would be a path: exit 2, the place and the rule.
fn validate(path: &Path) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn validate_refuses_a_pipeline_name_that_is_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("site.toml");
    std::fs::write(
        &written,
        "version = 1\nname = \"../../x\"\n[[stages]]\nname = \"only\"\n",
    )
    .unwrap();
    let (code, stderr) = validate(&written);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid pipeline name `../../x`"),
        "{stderr}"
    );
    assert!(stderr.contains("site.toml:2:8"), "{stderr}");
    assert!(stderr.contains("lowercase letters, digits"), "{stderr}");

    // Without `name`, the file's stem is the name, and is checked the same way.
    let stem = dir.path().join("web.prod.toml");
    std::fs::write(&stem, "version = 1\n[[stages]]\nname = \"only\"\n").unwrap();
    let (code, stderr) = validate(&stem);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`web.prod`"), "{stderr}");
    assert!(stderr.contains("web.prod.toml:1:1"), "{stderr}");
    assert!(stderr.contains("add `name = \"...\"`"), "{stderr}");

    // A `pipeline.toml` takes its folder's name: `.hidden` is not one.
    let folder = dir.path().join(".hidden");
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("pipeline.toml");
    std::fs::write(&file, "version = 1\n[[stages]]\nname = \"only\"\n").unwrap();
    let (code, stderr) = validate(&file);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`.hidden`"), "{stderr}");

    // A name with NUL, or one too long, is refused in the file too (TOML can spell both).
    let long = "p".repeat(65);
    for (name, shown) in [("a\\u0000b", "a<U+0000>b"), (&*long, "65 characters long")] {
        std::fs::write(
            &written,
            format!("version = 1\nname = \"{name}\"\n[[stages]]\nname = \"only\"\n"),
        )
        .unwrap();
        let (code, stderr) = validate(&written);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(shown), "{stderr}");
        assert!(!stderr.contains('\0'), "{stderr:?}");
    }
}

/// `POST /pipelines/{name}/validate` as a releaser, naming a file the server can read outside
/// the plugin directories, a missing one, a device and a symlink out: one answer, that quotes
/// no byte and does not tell which exist; nothing is stored or written.
#[test]
fn validate_over_the_api_reads_no_plugin_outside_the_plugin_directories() {
    use crate::support::server::Server;
    use sluice::service::config::ApiLimits;

    let server = Server::start("1h", ApiLimits::default());
    let outside = server.dir.path().join("secret.wasm");
    std::fs::write(&outside, "root:x:0:0:TOP-SECRET").unwrap();
    let pipelines = server.dir.path().join("pipelines");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, pipelines.join("link.wasm")).unwrap();
    let before = std::fs::read_dir(&pipelines).unwrap().count();
    let validate = |plugin: &str| {
        let pipeline = format!(
            "version = 1\n[[stages]]\nname = \"dev\"\n[[stages.tasks]]\nname = \"deploy\"\nplugin = {plugin:?}\n"
        );
        let reply = server
            .runtime
            .block_on(server.client("rita").send(
                "POST",
                "/api/v1/pipelines/shop/validate",
                Some(pipeline.into_bytes()),
                &[],
            ))
            .unwrap();
        assert!(
            reply.status >= 400 && reply.status < 500,
            "{}",
            reply.text()
        );
        let text = reply.text();
        for leak in ["TOP-SECRET", "root:", "0x72", "actual", "No such file"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert!(
            text.contains("not a component file under the plugin directories"),
            "{text}"
        );
        let resolved = pipelines.join(plugin).display().to_string();
        text.replace(&resolved, "PLUGIN").replace(plugin, "PLUGIN")
    };
    let answer = validate(&outside.display().to_string());
    for other in [
        "/etc/passwd".to_owned(),
        "/no/such/plugin.wasm".to_owned(),
        "/dev/zero".to_owned(),
        "../secret.wasm".to_owned(),
        "./link.wasm".to_owned(),
    ] {
        assert_eq!(validate(&other), answer, "{other}");
    }
    assert_eq!(std::fs::read_dir(&pipelines).unwrap().count(), before);
    let stored = server.get("vic", "/api/v1/pipelines/shop");
    assert!(!stored.to_string().contains("secret"), "{stored}");
}
