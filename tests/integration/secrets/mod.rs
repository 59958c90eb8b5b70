//! Secret outputs between tasks (issue #11.13): a task's secret output reaches the later
//! tasks of its stage and of later stages with its real value, is kept sealed in the store
//! (never its clear bytes in the store file), is shown as `***` by the API, the CLI and every
//! log; a lost or wrong key fails the release that needs it with an error that says so, while
//! other releases keep working. Where the key comes from, and that no pipeline hands it to a
//! task, is in `keys.rs`.

mod keys;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use sluice::core::{ApprovalKind, Release, ReleaseState, StageState, TaskState};
use sluice::pipeline;
use sluice::plugin::{HostConfig, PluginHost};
use sluice::scheduler::{Approvals, CreateOptions, Engine, Observer};
use sluice::store::{LogKey, Store};

use crate::engine::Project;

/// The secret a task mints; only ever in `secret/value.txt` of the project, never in a
/// pipeline (the plan is stored with the release).
pub(crate) const SECRET: &str = "tok-5e3c-9a1f-d00d";

/// `vault`: `mint` outputs the secret `token`; `same-stage` checks it in `dev`; in `prod`
/// (after an approval when `approval`), `later-stage` checks it, `render` writes it into a
/// file through `$(mint.token)`, and `echo` logs every variable and returns it.
pub(crate) fn vault(approval: bool) -> String {
    let approval = if approval {
        r#"pre-approval = { approvers = ["alice"] }"#
    } else {
        ""
    };
    format!(
        r#"
version = 1
name = "vault"

[[stages]]
name = "dev"
[[stages.tasks]]
name = "mint"
plugin = "kit"
config = {{ action = "secret-output", name = "token", path = "/secret/value.txt" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/secret", guest = "/secret" }}]
[[stages.tasks]]
name = "same-stage"
plugin = "kit"
config = {{ action = "expect-secret", name = "mint.token", path = "/secret/value.txt" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/secret", guest = "/secret" }}]

[[stages]]
name = "prod"
after = ["dev"]
{approval}
[[stages.tasks]]
name = "later-stage"
plugin = "kit"
config = {{ action = "expect-secret", name = "mint.token", path = "/secret/value.txt" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/secret", guest = "/secret" }}]
[[stages.tasks]]
name = "render"
plugin = "kit"
config = {{ action = "write", path = "/out/app.conf", content = "token=$(mint.token)" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/out", guest = "/out", access = "rw" }}]
[[stages.tasks]]
name = "echo"
plugin = "kit"
config = {{ action = "echo" }}
"#
    )
}

/// A project with `pipeline` and the secret in `secret/value.txt`.
pub(crate) fn project(pipeline: &str) -> Project {
    let project = Project::new(pipeline);
    std::fs::create_dir_all(project.path().join("secret")).unwrap();
    std::fs::write(project.path().join("secret/value.txt"), SECRET).unwrap();
    project
}

pub(crate) fn engine(project: &Project) -> Arc<Engine> {
    let store = Store::open(&project.data_dir()).unwrap();
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(project.data_dir().join("cache")),
        ..HostConfig::default()
    })
    .unwrap();
    Arc::new(Engine::new(store, Arc::new(host), project.data_dir()))
}

struct Quiet;
impl Observer for Quiet {}

/// Approves everything, or leaves everything pending.
struct Decide(bool);
impl Approvals for Decide {
    fn decide(&self, _: &Release, _: &str, _: ApprovalKind) -> Option<(bool, String)> {
        self.0.then(|| (true, "ok".into()))
    }
}

pub(crate) async fn create(engine: &Arc<Engine>, project: &Project) -> String {
    let loaded = pipeline::load(&project.pipeline()).unwrap();
    let options = CreateOptions {
        creator: "rita".into(),
        ..CreateOptions::default()
    };
    engine
        .create_release(&loaded, options, None)
        .await
        .unwrap()
        .name
}

pub(crate) async fn drive(engine: &Arc<Engine>, release: &str, approve: bool) -> Release {
    engine
        .drive(release, Arc::new(Decide(approve)), Arc::new(Quiet))
        .await
        .unwrap()
}

pub(crate) fn task<'a>(release: &'a Release, stage: &str, name: &str) -> &'a sluice::core::TaskRun {
    let attempt = release.stage(stage).unwrap().attempts.last().unwrap();
    attempt.tasks.iter().find(|t| t.name == name).unwrap()
}

/// Whether `bytes` hold the secret anywhere.
pub(crate) fn holds_secret(bytes: &[u8]) -> bool {
    bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes())
}

#[tokio::test]
async fn a_secret_output_reaches_later_tasks_and_is_stored_only_sealed() {
    let project = project(&vault(false));
    let engine = engine(&project);
    let name = create(&engine, &project).await;
    let release = drive(&engine, &name, true).await;
    assert_eq!(release.state, ReleaseState::Succeeded, "{release:#?}");
    for (stage, name) in [("dev", "same-stage"), ("prod", "later-stage")] {
        let run = task(&release, stage, name);
        assert_eq!(
            run.state,
            TaskState::Succeeded,
            "{name}: {:?}",
            run.messages
        );
    }
    let rendered = std::fs::read_to_string(project.path().join("out/app.conf")).unwrap();
    assert_eq!(
        rendered,
        format!("token={SECRET}"),
        "`$(mint.token)` is the value"
    );

    // The record keeps `***` and the sealed value; `echo`, which returned the value it was
    // given, has its output made secret and sealed as well.
    let minted = &task(&release, "dev", "mint").outputs[0];
    assert!(minted.secret && minted.value == "***" && minted.sealed.is_some());
    let echoed = task(&release, "prod", "echo").outputs.iter();
    let echoed: Vec<_> = echoed.filter(|o| o.name == "var.mint.token").collect();
    assert!(
        echoed[0].secret && echoed[0].value == "***" && echoed[0].sealed.is_some(),
        "{echoed:?}"
    );
    drop(engine);

    // Every log says `***`: the minting task's own line, and the later tasks' (masked live).
    let store = Store::open(&project.data_dir()).unwrap();
    let log = |stage: &str, task: &str| -> Vec<String> {
        let key = LogKey {
            release: &name,
            stage,
            attempt: 1,
            task,
        };
        let lines = store.log(&key).unwrap().unwrap();
        lines.iter().map(ToString::to_string).collect()
    };
    let expect = |stage, task, line: &str| {
        let lines = log(stage, task);
        assert!(lines.iter().any(|l| l.ends_with(line)), "{task}: {lines:?}");
        assert!(
            !lines.iter().any(|l| l.contains(SECRET)),
            "{task}: {lines:?}"
        );
    };
    expect("dev", "mint", "minted ***");
    expect("dev", "same-stage", "variable `mint.token` holds ***");
    expect("prod", "later-stage", "variable `mint.token` holds ***");
    expect("prod", "echo", "mint.token is ***");
    drop(store);

    let raw = std::fs::read(project.data_dir().join("sluice.redb")).unwrap();
    assert!(!holds_secret(&raw), "the secret reached the store file");
    let key = project.data_dir().join("secret.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is the owner's only");

    // The CLI shows the release with `***`.
    let shown = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["releases", "show", &name])
        .env("SLUICE_DATA_DIR", project.data_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{stdout}");
    assert!(stdout.contains("output token = ***"), "{stdout}");
    assert!(!stdout.contains(SECRET), "{stdout}");
}

/// The error of the first task of `prod`, which needs the secret.
fn prod_failure(release: &Release) -> String {
    let prod = release.stage("prod").unwrap().attempts.last().unwrap();
    assert_eq!(prod.state, StageState::Failed, "{prod:#?}");
    prod.tasks[0].messages.join("; ")
}

#[tokio::test]
async fn a_lost_or_wrong_key_fails_the_release_that_needs_it_and_no_other() {
    let project = project(&vault(true));
    let key_file = project.data_dir().join("secret.key");
    // Two releases seal their secret under the first key and wait for prod's approval.
    let first = engine(&project);
    let (lost, wrong) = (
        create(&first, &project).await,
        create(&first, &project).await,
    );
    for name in [&lost, &wrong] {
        let waiting = drive(&first, name, false).await;
        assert_eq!(
            waiting.stage("prod").unwrap().state(),
            StageState::AwaitingApproval
        );
    }
    let stored = first.store().release(&lost).unwrap().unwrap();
    let sealed_with = task(&stored, "dev", "mint").outputs[0]
        .sealed
        .clone()
        .unwrap()
        .key;
    drop(first);
    let original = std::fs::read(&key_file).unwrap();

    // Restarted without its key: the release that needs it fails, saying what is missing.
    std::fs::remove_file(&key_file).unwrap();
    let keyless = engine(&project);
    let failed = drive(&keyless, &lost, true).await;
    let why = prod_failure(&failed);
    assert!(
        why.starts_with(&format!(
            "secret output `mint.token` of release {lost} (stage dev, attempt 1) cannot be \
             decrypted: there is no secret key (SLUICE_SECRET_KEY is not set and {} does not \
             exist); restore the key it was sealed with (key id {sealed_with})",
            key_file.display()
        )),
        "{why}"
    );
    assert!(!key_file.exists(), "opening never makes a key");
    drop(keyless);

    // Restarted with another key: named as another key.
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let other = engine(&project);
    let why = prod_failure(&drive(&other, &wrong, true).await);
    assert!(
        why.contains(&format!(
            "it was sealed with key id {sealed_with}, but this engine's key"
        )) && why.contains("restore the key it was sealed with, or redeploy stage dev"),
        "{why}"
    );
    assert!(!why.contains(SECRET), "{why}");

    // Another release works end to end under the key there is now.
    let fresh = create(&other, &project).await;
    let done = drive(&other, &fresh, true).await;
    assert_eq!(done.state, ReleaseState::Succeeded, "{done:#?}");
    drop(other);

    // With its key restored, the first release's prod deploys again and gets the secret.
    std::fs::write(&key_file, &original).unwrap();
    let restored = engine(&project);
    let redeploy = sluice::core::Event::Deploy {
        stage: "prod".into(),
    };
    restored
        .apply(&wrong, redeploy, "rita", &Quiet)
        .await
        .unwrap();
    let again = drive(&restored, &wrong, true).await;
    let prod = again.stage("prod").unwrap().attempts.last().unwrap();
    assert_eq!(prod.state, StageState::Succeeded, "{prod:#?}");
}
