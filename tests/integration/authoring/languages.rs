//! Each language from `plugin new` to a sandboxed run, and refused what it was not granted.

use std::path::Path;

use super::{
    command, js_probe, js_task, ok, python_probe, python_task, run_plugin, rust_task, sluice_in,
};
use crate::support::{TestServer, said};

/// The template task writes its greeting into the granted directory and hands its path on.
fn greets(dir: &Path, component: &Path) {
    let out = dir.join("out");
    let grant = format!("{}:/out:rw", out.display());
    let run = run_plugin(
        dir,
        component,
        &std::fs::read_to_string(dir.join("task.toml")).unwrap(),
        &["--grant-dir", &grant],
    );
    let printed = said(&run);
    assert_eq!(run.status.code(), Some(0), "{printed}");
    assert!(
        printed.contains("output greeting-file = /out/greeting.txt"),
        "{printed}"
    );
    let text = std::fs::read_to_string(out.join("greeting.txt")).unwrap();
    assert_eq!(text, "Hello, world! (local-1 on local)\n");

    // Without the grant the same task is refused, and says which grant is missing.
    let refused = run_plugin(
        dir,
        component,
        &std::fs::read_to_string(dir.join("task.toml")).unwrap(),
        &[],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    assert!(
        said(&refused).contains("/out/greeting.txt"),
        "{}",
        said(&refused)
    );
}

#[test]
fn python_goes_from_plugin_new_through_pytest_and_build_to_a_sandboxed_run() {
    let built = python_task();
    let pytest = command("python", &built.dir)
        .args(["-m", "pytest", "-q"])
        .output()
        .unwrap();
    assert!(pytest.status.success(), "pytest: {}", said(&pytest));
    assert!(said(&pytest).contains("3 passed"), "{}", said(&pytest));
    greets(&built.dir, &built.component);

    // Those runs compiled it with Winch (fast, and cached); `plugin compile` makes Cranelift's
    // code, which every later run takes from the cache.
    let component = built.component.to_str().unwrap();
    let compiler = || {
        let shown = ok(
            sluice_in(&built.dir).args(["plugin", "inspect", component]),
            "inspect",
        );
        let line = shown.lines().find(|l| l.starts_with("compiler:"));
        line.unwrap_or_else(|| panic!("{shown}")).to_owned()
    };
    let first = compiler();
    assert!(first.starts_with("compiler: winch (baseline"), "{first}");
    let compiled = ok(
        sluice_in(&built.dir).args(["plugin", "compile", component]),
        "compile",
    );
    assert!(compiled.contains("compiled"), "{compiled}");
    assert_eq!(compiler(), "compiler: cranelift (optimised)");
    greets(&built.dir, &built.component);

    // The project pins the componentize-py the tests build with.
    let pinned = std::fs::read_to_string(built.dir.join("requirements-dev.txt")).unwrap();
    let version = ok(
        command("componentize-py", &built.dir).arg("--version"),
        "componentize-py",
    );
    let version = version.trim().strip_prefix("componentize-py ").unwrap();
    assert!(
        pinned.contains(&format!("componentize-py=={version}")),
        "{pinned} / {version}"
    );
}

#[test]
fn javascript_goes_from_plugin_new_through_node_test_and_build_to_a_sandboxed_run() {
    let built = js_task();
    let test = command("node", &built.dir)
        .args(["--test", "src/"])
        .output()
        .unwrap();
    assert!(test.status.success(), "node --test: {}", said(&test));
    assert!(said(&test).contains("# pass 3"), "{}", said(&test));
    greets(&built.dir, &built.component);

    let package = std::fs::read_to_string(built.dir.join("package.json")).unwrap();
    let version = ok(
        command("componentize-js", &built.dir).arg("--version"),
        "componentize-js",
    );
    assert!(
        package.contains(&format!(
            r#""@bytecodealliance/componentize-js": "{}""#,
            version.trim()
        )),
        "{package} / {version}"
    );
}

#[test]
fn rust_goes_from_plugin_new_through_cargo_test_and_build_to_a_sandboxed_run() {
    let built = rust_task();
    let test = command("cargo", &built.dir)
        .args(["test", "--lib"])
        .output()
        .unwrap();
    assert!(test.status.success(), "cargo test: {}", said(&test));
    assert!(said(&test).contains("1 passed"), "{}", said(&test));
    greets(&built.dir, &built.component);
}

#[test]
fn python_and_javascript_plugins_are_refused_what_they_were_not_granted() {
    let server = TestServer::start("pong");
    let host = server.addr.to_string();
    for built in [python_probe(), js_probe()] {
        let (dir, component) = (&built.dir, &built.component);
        let secret = dir.join("secret");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("key.txt"), "s3cr3t").unwrap();
        let grant = format!("{}:/secret", secret.display());
        let read = r#"mode = "read"
path = "/secret/key.txt""#;
        let env = "mode = \"env\"\nname = \"PROBE_TOKEN\"";
        let http = format!("mode = \"http\"\nurl = \"{}\"", server.url("/ping"));
        // (config, what it reaches, the flags that grant it, what it prints when granted)
        let cases: [(&str, &str, [&str; 2], &str); 3] = [
            (
                read,
                "a directory",
                ["--grant-dir", &grant],
                "output text = s3cr3t",
            ),
            (
                env,
                "a variable",
                ["--grant-env", "PROBE_TOKEN=t0ken"],
                "output value = t0ken",
            ),
            (
                &http,
                "a host",
                ["--grant-host", &host],
                "output body = pong",
            ),
        ];
        for (config, what, granted, reached) in cases {
            let before = server.hits();
            let denied = run_plugin(dir, component, config, &[]);
            let text = said(&denied);
            assert_eq!(
                denied.status.code(),
                Some(1),
                "{what}, {}: {text}",
                component.display()
            );
            assert!(
                !text.contains(reached.rsplit(" = ").next().unwrap()),
                "{what}: {text}"
            );
            assert!(
                text.contains("grant"),
                "{what}: the failure names the grant: {text}"
            );
            assert_eq!(server.hits(), before, "{what}: no request left the sandbox");
            let allowed = run_plugin(dir, component, config, &granted);
            assert!(
                said(&allowed).contains(reached),
                "{what}, granted: {}",
                said(&allowed)
            );
        }
    }
}

#[test]
fn a_missing_build_tool_is_named_with_the_command_that_installs_it() {
    for (lang, says) in [
        ("python", "pip install componentize-py==0.25.1"),
        ("js", "`npm install` in"),
    ] {
        let dir = super::new_project(&format!("toolless-{lang}"), lang, "task", &[]);
        let build = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .current_dir(&dir)
            .args(["plugin", "build"])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        let text = said(&build);
        assert_ne!(build.status.code(), Some(0), "{text}");
        assert!(
            text.contains("is not installed") && text.contains(says),
            "{lang}: {text}"
        );
        assert!(
            !dir.join("build").read_dir().unwrap().any(|_| true),
            "{lang}: nothing built"
        );
    }
}
