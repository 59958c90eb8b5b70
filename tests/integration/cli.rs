//! The `sluice` binary as a plugin author uses it: `sluice plugin list|export|inspect|run`.

use std::process::{Command, Output};

use crate::support::{TESTKIT, TestServer, copy_tree};

fn sluice(args: &[&str], data_dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_DATA_DIR", data_dir)
        .output()
        .expect("sluice runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn list_export_and_inspect_agree_on_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let list = sluice(&["plugin", "list"], tmp.path());
    assert!(list.status.success());
    let line = stdout(&list)
        .lines()
        .find(|l| l.starts_with("copy "))
        .expect("copy is listed")
        .to_owned();
    let listed_digest = line.split_whitespace().nth(1).unwrap().to_owned();

    let file = tmp.path().join("copy.wasm");
    let export = sluice(
        &["plugin", "export", "copy", "-o", file.to_str().unwrap()],
        tmp.path(),
    );
    assert!(export.status.success(), "{}", stderr(&export));

    let inspect = sluice(&["plugin", "inspect", file.to_str().unwrap()], tmp.path());
    let text = stdout(&inspect);
    assert!(
        text.contains(&format!("digest:   {listed_digest}")),
        "{text}"
    );
    assert!(text.contains("worlds:   task"), "{text}");
    assert!(text.contains("sluice:plugin/task@0.1.0"), "{text}");

    let unknown = sluice(&["plugin", "export", "kopy", "-o", "x.wasm"], tmp.path());
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).starts_with("sluice: there is no built-in plugin named `kopy`"));
}

#[test]
fn run_prints_logs_and_outcome_with_documented_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let config = tmp.path().join("task.toml");
    std::fs::write(&config, "action = \"echo\"\n").unwrap();
    let run = sluice(
        &[
            "plugin",
            "run",
            TESTKIT,
            "--config",
            config.to_str().unwrap(),
            "--var",
            "region=eu",
            "--secret",
            "token=hunter2",
        ],
        tmp.path(),
    );
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let text = stdout(&run);
    assert!(text.contains("info  region is eu"), "{text}");
    assert!(
        text.contains("token is ***") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(text.contains("output release = local-1"), "{text}");
    assert!(text.contains("succeeded in"), "{text}");

    std::fs::write(
        &config,
        "action = \"fail\"\nmessage = \"no route to prod\"\n",
    )
    .unwrap();
    let run = sluice(
        &[
            "plugin",
            "run",
            TESTKIT,
            "--config",
            config.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stdout(&run).contains(r#"failed: plugin failed: "no route to prod" in"#),
        "{}",
        stdout(&run)
    );

    std::fs::write(&config, "action = \"alloc\"\nmib = 512\n").unwrap();
    let run = sluice(
        &[
            "plugin",
            "run",
            TESTKIT,
            "--config",
            config.to_str().unwrap(),
            "--memory",
            "16MiB",
        ],
        tmp.path(),
    );
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stdout(&run).contains("memory limit of 16 MiB exceeded"),
        "{}",
        stdout(&run)
    );

    let bad = sluice(
        &["plugin", "run", TESTKIT, "--grant-dir", "relative"],
        tmp.path(),
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("HOST:GUEST"), "{}", stderr(&bad));
}

#[test]
fn run_grants_directories_and_hosts_from_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let config = tmp.path().join("task.toml");
    std::fs::write(
        &config,
        "action = \"write\"\npath = \"/out/x.txt\"\ncontent = \"hi\"\n",
    )
    .unwrap();
    let grant = format!("{}:/out:rw", out.display());
    let run = sluice(
        &[
            "plugin",
            "run",
            TESTKIT,
            "--config",
            config.to_str().unwrap(),
            "--grant-dir",
            &grant,
        ],
        // The data directory is never granted: it lies beside `out`, not around it.
        &tmp.path().join("data"),
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}{}",
        stdout(&run),
        stderr(&run)
    );
    assert_eq!(std::fs::read_to_string(out.join("x.txt")).unwrap(), "hi");

    let server = TestServer::start("ok");
    std::fs::write(&config, format!("url = \"{}\"\n", server.url("/"))).unwrap();
    let args = [
        "plugin",
        "run",
        "http-check",
        "--world",
        "gate",
        "--config",
        config.to_str().unwrap(),
    ];
    let denied = sluice(&args, tmp.path());
    assert_eq!(denied.status.code(), Some(1));
    assert!(stdout(&denied).contains("unhealthy"), "{}", stdout(&denied));
    let addr = server.addr.to_string();
    let allowed = sluice(&[&args[..], &["--grant-host", &addr]].concat(), tmp.path());
    assert_eq!(allowed.status.code(), Some(0), "{}", stdout(&allowed));
    assert!(stdout(&allowed).contains("healthy"));
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_sluice()"),
        ("zsh", "#compdef sluice"),
        ("fish", "complete -c sluice"),
    ] {
        let output = sluice(&["completions", shell], dir.path());
        assert!(output.status.success(), "{}", stderr(&output));
        let script = stdout(&output);
        assert!(script.contains(marker), "{shell}: {script:.200}");
        assert!(
            script.contains("approvals"),
            "{shell} completes subcommands"
        );
    }
}

#[test]
fn run_and_validate_take_a_relative_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/space-game");
    copy_tree(std::path::Path::new(example), tmp.path());
    let sluice = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .current_dir(tmp.path())
            .env_remove("SLUICE_DATA_DIR")
            .output()
            .expect("sluice runs")
    };

    let run = sluice(&[
        "run",
        "pipeline.toml",
        "--approve",
        "all",
        "--data-dir",
        "data",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(tmp.path().join("data/sluice.redb").is_file());
    let site = std::fs::read_to_string(tmp.path().join("sites/staging/index.html")).unwrap();
    assert!(site.contains("Version 1.1.0"), "{site}");

    // `validate` takes the flag every command takes, and compiles into that directory's cache.
    let validate = sluice(&["validate", "--data-dir", "checked", "pipeline.toml"]);
    assert_eq!(validate.status.code(), Some(0), "{}", stderr(&validate));
    assert!(
        stdout(&validate).contains("is valid"),
        "{}",
        stdout(&validate)
    );
    let cached = std::fs::read_dir(tmp.path().join("checked/compiled"))
        .expect("the compile cache is under --data-dir")
        .count();
    assert!(cached > 0, "nothing compiled into checked/compiled");

    let empty = sluice(&["validate", "--data-dir", "", "pipeline.toml"]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(stderr(&empty).contains("--data-dir"), "{}", stderr(&empty));
}

#[test]
fn run_refuses_a_pooled_stage_before_creating_a_release() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(TESTKIT, tmp.path().join("kit.wasm")).unwrap();
    let pipeline = tmp.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "version = 1\nname = \"p\"\n[[stages]]\nname = \"prod\"\npool = \"eu-prod\"\n[[stages.tasks]]\nplugin = \"./kit.wasm\"\nconfig = { action = \"noop\" }\n",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let run = sluice(&["run", pipeline.to_str().unwrap()], &data);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("stage `prod` runs on an agent of pool `eu-prod`, and `sluice run` runs every stage here"),
        "{}",
        stderr(&run)
    );
    assert!(
        !data.join("sluice.redb").exists() && !data.exists(),
        "no release stored"
    );
}
