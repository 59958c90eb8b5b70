//! The engine's key: from `SLUICE_SECRET_KEY` when it is set (no key file then); a malformed
//! one, or a key file others may read, stops `sluice run` and the service before anything is
//! opened; and a pipeline author who tries to hand the key to a task is refused.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use sluice::core::{ReleaseState, TaskState};
use sluice::service::{Service, ServiceConfig, config::ApiLimits};
use sluice::store::Store;

use super::{SECRET, create, drive, engine, holds_secret, project, task, vault};

/// `sluice run pipeline.toml --approve all` in the project, with `SLUICE_SECRET_KEY` = `key`.
fn run(project: &crate::engine::Project, key: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "pipeline.toml", "--approve", "all", "--data-dir"])
        .arg(project.data_dir())
        .current_dir(project.path())
        .env_remove("SLUICE_DATA_DIR")
        .env("SLUICE_SECRET_KEY", key)
        .output()
        .unwrap()
}

#[test]
fn the_key_comes_from_sluice_secret_key_and_a_malformed_one_stops_the_run() {
    let project = project(&vault(false));
    let key = "9f".repeat(32);
    let ran = run(&project, &key);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{stderr}");
    // Live lines pass the mask of the secrets known when they are written: every later task's
    // (the minting task's own line, written before it returned the secret, is masked only in
    // the stored log).
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        stdout.contains("prod/later-stage") && stdout.contains("variable `mint.token` holds ***"),
        "{stdout}"
    );
    let mut later = stdout.lines().filter(|l| !l.contains("dev/mint "));
    assert!(!later.any(|l| l.contains(SECRET)), "{stdout}");

    assert!(!holds_secret(&ran.stderr), "{stderr}");
    assert!(
        !project.data_dir().join("secret.key").exists(),
        "with SLUICE_SECRET_KEY set, no key file is made"
    );
    let store = Store::open(&project.data_dir()).unwrap();
    let release = store.release("vault-1").unwrap().unwrap();
    assert_eq!(release.state, ReleaseState::Succeeded, "{release:#?}");
    assert_eq!(
        task(&release, "prod", "later-stage").state,
        TaskState::Succeeded
    );
    drop(store);

    for bad in ["not-a-key", &key[..60]] {
        let refused = run(&project, bad);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{stderr}");
        assert!(
            stderr.contains("SLUICE_SECRET_KEY must be 64 hex digits"),
            "{stderr}"
        );
        assert!(!stderr.contains(bad), "the key is not echoed: {stderr}");
    }
    let store = Store::open(&project.data_dir()).unwrap();
    assert!(
        store.release("vault-2").unwrap().is_none(),
        "nothing was created"
    );
}

#[tokio::test]
async fn a_key_file_others_may_read_stops_the_service_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let (data, pipelines) = (dir.path().join("data"), dir.path().join("pipelines"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&pipelines).unwrap();
    let key_file = data.join("secret.key");
    std::fs::write(&key_file, format!("{}\n", "5e".repeat(32))).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = ServiceConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.clone(),
        pipelines,
        tokens: Default::default(),
        limits: ApiLimits::default(),
        plugin_files: Default::default(),
        registries: Default::default(),
        pools: Default::default(),
        tls: None,
    };
    let Err(refused) = Service::start(config) else {
        panic!("the service started with a key file others may read");
    };
    assert_eq!(
        refused.to_string(),
        format!(
            "the secret key {0}: may be read or written by others (mode 644): run `chmod 600 {0}`",
            key_file.display()
        )
    );
    let left: Vec<_> = std::fs::read_dir(&data).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing opened or created: {left:?}");
}

/// A pipeline author tries to hand the engine's key to a task: as a variable from its
/// environment variable, from its file (by path, through a symlink, through a hard link), or
/// as an environment grant. Each is refused before the task runs; the key file is unchanged.
#[tokio::test]
async fn no_pipeline_hands_the_engine_key_to_a_task() {
    let probe = project("version = 1\n[[stages]]\nname = \"dev\"\n");
    let key_file = probe.data_dir().join("secret.key");
    std::fs::create_dir_all(probe.data_dir()).unwrap();
    let key = format!("{}\n", "c3".repeat(32));
    std::fs::write(&key_file, &key).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let symlink = probe.path().join("innocent.txt");
    std::os::unix::fs::symlink(&key_file, &symlink).unwrap();
    let hard_link = probe.path().join("hard.txt");
    std::fs::hard_link(&key_file, &hard_link).unwrap();
    let variable_refusal = |from: &str| {
        format!(
            "variable `k` comes from {from}, the engine's secret key, which is never given to a task"
        )
    };
    let cases = [
        (
            r#"k = { from-env = "SLUICE_SECRET_KEY" }"#.to_owned(),
            String::new(),
            variable_refusal("SLUICE_SECRET_KEY"),
        ),
        (
            format!(
                r#"k = {{ secret = true, from-file = "{}" }}"#,
                key_file.display()
            ),
            String::new(),
            variable_refusal(&key_file.display().to_string()),
        ),
        (
            format!(
                r#"k = {{ secret = true, from-file = "{}" }}"#,
                symlink.display()
            ),
            String::new(),
            variable_refusal(&symlink.display().to_string()),
        ),
        (
            format!(r#"k = {{ from-file = "{}" }}"#, hard_link.display()),
            String::new(),
            variable_refusal(&hard_link.display().to_string()),
        ),
        (
            String::new(),
            r#"grants.env = ["SLUICE_SECRET_KEY"]"#.to_owned(),
            "environment variable SLUICE_SECRET_KEY is the engine's secret key and is never \
             granted: remove it from the grants"
                .to_owned(),
        ),
    ];
    let engine = engine(&probe);
    for (variables, grant, refusal) in cases {
        let pipeline = format!(
            r#"
version = 1
name = "grab"
[variables]
{variables}
[[stages]]
name = "dev"
[[stages.tasks]]
name = "leak"
plugin = "kit"
config = {{ action = "append", path = "/project/markers.txt", line = "ran" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)", guest = "/project", access = "rw" }}]
{grant}
"#
        );
        std::fs::write(probe.pipeline(), &pipeline).unwrap();
        let name = create(&engine, &probe).await;
        let done = drive(&engine, &name, true).await;
        assert_eq!(done.state, ReleaseState::Failed, "{pipeline}");
        let why = task(&done, "dev", "leak").messages.join("; ");
        assert!(why.starts_with(&refusal), "{pipeline}\n{why}");
        assert!(!why.contains(&key[..64]), "{why}");
        assert!(probe.lines("markers.txt").is_empty(), "the task never ran");
    }
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key,
        "the key is untouched"
    );
}
