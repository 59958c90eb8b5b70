//! The release engine through its library API: releases created from pipeline files, driven
//! to their end with real plugins, state and logs in redb.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice::core::{ApprovalKind, Event, Release, ReleaseState, StageState, TaskState};
use sluice::pipeline;
use sluice::plugin::{HostConfig, PluginHost};
use sluice::scheduler::{Approvals, CreateOptions, Engine, EngineError, Observer};
use sluice::store::{LogKey, Store};

use crate::support::{TEMPLATE, TESTKIT};

/// A pipeline directory with the testkit as `plugins/kit.wasm` and builds `1.0.0`, `1.1.0`;
/// its data directory lies beside it, so a task may be granted the whole pipeline directory
/// (the data directory is never granted).
pub struct Project {
    pub dir: tempfile::TempDir,
    project: PathBuf,
}

impl Project {
    pub fn new(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(project.join("plugins")).unwrap();
        std::fs::copy(TESTKIT, project.join("plugins/kit.wasm")).unwrap();
        for (v, branch) in [("1.0.0", "release"), ("1.1.0", "main")] {
            let build = project.join("builds").join(v);
            std::fs::create_dir_all(&build).unwrap();
            std::fs::write(build.join("index.html"), format!("site {v}")).unwrap();
            std::fs::write(
                build.join(".artifact.json"),
                format!(r#"{{"branch": "{branch}"}}"#),
            )
            .unwrap();
        }
        std::fs::write(project.join("pipeline.toml"), pipeline).unwrap();
        Self { dir, project }
    }

    pub fn path(&self) -> &Path {
        &self.project
    }

    pub fn pipeline(&self) -> PathBuf {
        self.path().join("pipeline.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn engine(&self) -> Arc<Engine> {
        let store = Store::open(&self.data_dir()).unwrap();
        let host = PluginHost::new(HostConfig {
            cache_dir: Some(self.data_dir().join("cache")),
            ..HostConfig::default()
        })
        .unwrap();
        Arc::new(Engine::new(store, Arc::new(host), self.data_dir()))
    }

    pub fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

struct Quiet;
impl Observer for Quiet {}

/// Decides every approval the same way.
struct Decide(Option<bool>);
impl Approvals for Decide {
    fn decide(&self, _: &Release, _: &str, _: ApprovalKind) -> Option<(bool, String)> {
        self.0
            .map(|approve| (approve, "decided by the test".into()))
    }
}

pub(crate) async fn run(
    project: &Project,
    approve: Option<bool>,
    options: CreateOptions,
) -> Result<Release, EngineError> {
    let engine = project.engine();
    let loaded = pipeline::load(&project.pipeline())?;
    let release = engine.create_release(&loaded, options, None).await?;
    engine
        .drive(&release.name, Arc::new(Decide(approve)), Arc::new(Quiet))
        .await
}

pub(crate) fn options() -> CreateOptions {
    CreateOptions {
        creator: "tester".into(),
        ..CreateOptions::default()
    }
}

pub(crate) const HEADER: &str = r#"
version = 1
name = "demo"

[artifacts.site]
source = "dir-source"
config = { path = "/builds" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)/builds", guest = "/builds" }]
"#;

/// A task appending `line` to `file` in the project directory.
fn append(name: &str, line: &str, extra: &str) -> String {
    format!(
        r#"
[[stages.tasks]]
name = "{name}"
plugin = "kit"
config = {{ action = "append", path = "/project/markers.txt", line = "{line}" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)", guest = "/project", access = "rw" }}]
{extra}
"#
    )
}

#[tokio::test]
async fn a_release_deploys_its_artifact_and_passes_outputs_between_stages() {
    let pipeline = format!(
        r#"{HEADER}
[variables]
greeting = "hello"

[[stages]]
name = "dev"
[[stages.tasks]]
name = "deploy"
plugin = "copy"
config = {{ from = "site", to = "/site" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/sites/dev", guest = "/site", access = "rw" }}]

[[stages]]
name = "qa"
after = "dev"
[[stages.tasks]]
name = "note"
plugin = "kit"
config = {{ action = "append", path = "/project/notes.txt", line = "$(greeting) from $(sluice.release): $(deploy.summary)" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)", guest = "/project", access = "rw" }}]
"#
    );
    let project = Project::new(&pipeline);
    let release = run(&project, None, options()).await.unwrap();
    assert_eq!(release.state, ReleaseState::Succeeded);
    assert_eq!(release.name, "demo-1");
    assert_eq!(
        release.artifacts[0].version.id, "1.1.0",
        "latest version by version order"
    );
    let site = std::fs::read_to_string(project.path().join("sites/dev/index.html")).unwrap();
    assert_eq!(site, "site 1.1.0");
    assert_eq!(
        project.lines("notes.txt"),
        ["hello from demo-1: 1 added, 0 updated, 0 unchanged, 0 removed"]
    );
    assert_eq!(
        release.digests.len(),
        3,
        "source, copy and kit digests are recorded"
    );

    // The stored release and the task's log survive the engine.
    let store = Store::open(&project.data_dir()).unwrap();
    let stored = store.release("demo-1").unwrap().unwrap();
    assert_eq!(stored, release);
    let log = store
        .log(&LogKey {
            release: "demo-1",
            stage: "dev",
            attempt: 1,
            task: "deploy",
        })
        .unwrap()
        .unwrap();
    assert!(
        log.iter().any(|l| l.message == "added index.html"),
        "{log:?}"
    );
    assert!(
        store
            .audit()
            .unwrap()
            .iter()
            .any(|a| a.what == "dev: task deploy succeeded")
    );
}

#[tokio::test]
async fn artifact_versions_follow_selectors_and_overrides() {
    let project = Project::new(&format!("{HEADER}\n[[stages]]\nname = \"dev\"\n").replace(
        "config = { path = \"/builds\" }",
        "config = { path = \"/builds\" }\nversion = { branch = \"release\" }",
    ));
    let release = run(&project, None, options()).await.unwrap();
    assert_eq!(release.artifacts[0].version.id, "1.0.0");
    assert_eq!(
        release.artifacts[0].version.branch.as_deref(),
        Some("release")
    );

    let mut chosen = options();
    chosen.artifacts.insert("site".into(), "1.1.0".into());
    assert_eq!(
        run(&project, None, chosen).await.unwrap().artifacts[0]
            .version
            .id,
        "1.1.0"
    );

    let mut missing = options();
    missing.artifacts.insert("site".into(), "9.9".into());
    let err = run(&project, None, missing).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "artifact `site`: the source has no version `9.9` (it has: 1.1.0, 1.0.0)"
    );
}

#[tokio::test]
async fn a_rejected_approval_stops_the_release() {
    let pipeline = format!(
        "{HEADER}\n[[stages]]\nname = \"staging\"\npre-approval = {{ approvers = [\"alice\"] }}\n{}",
        append("deploy", "staging", "")
    );
    let project = Project::new(&pipeline);
    let release = run(&project, Some(false), options()).await.unwrap();
    assert_eq!(release.state, ReleaseState::Failed);
    assert_eq!(
        release.stage("staging").unwrap().state(),
        StageState::Rejected
    );
    assert!(
        project.lines("markers.txt").is_empty(),
        "a rejected stage runs nothing"
    );

    // Undecided, the release waits and says so.
    let release = run(&project, None, options()).await.unwrap();
    assert_eq!(release.state, ReleaseState::Active);
    assert_eq!(
        release.stage("staging").unwrap().state(),
        StageState::AwaitingApproval
    );
}

#[tokio::test]
async fn a_failed_stage_stops_downstream_and_a_redeploy_recovers() {
    let pipeline = format!(
        r#"{HEADER}
[[stages]]
name = "dev"
[[stages.tasks]]
name = "flaky"
plugin = "kit"
config = {{ action = "read", path = "/project/ready.txt" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)", guest = "/project" }}]

[[stages]]
name = "qa"
after = "dev"
{}"#,
        append("qa-deploy", "qa", "")
    );
    let project = Project::new(&pipeline);
    let release = run(&project, None, options()).await.unwrap();
    assert_eq!(release.state, ReleaseState::Failed);
    assert_eq!(release.stage("qa").unwrap().state(), StageState::NotStarted);
    assert!(project.lines("markers.txt").is_empty());

    std::fs::write(project.path().join("ready.txt"), "ok").unwrap();
    let engine = project.engine();
    engine
        .apply(
            &release.name,
            Event::Deploy {
                stage: "dev".into(),
            },
            "tester",
            &Quiet,
        )
        .await
        .unwrap();
    let release = engine
        .drive(&release.name, Arc::new(Decide(None)), Arc::new(Quiet))
        .await
        .unwrap();
    assert_eq!(release.state, ReleaseState::Succeeded);
    let dev = release.stage("dev").unwrap();
    assert_eq!(dev.attempts.len(), 2);
    assert_eq!(dev.attempts[0].state, StageState::Failed);
    assert_eq!(project.lines("markers.txt"), ["qa"]);
}

#[tokio::test]
async fn partial_success_when_a_continue_on_error_task_fails() {
    let pipeline = format!(
        "{HEADER}\n[[stages]]\nname = \"dev\"\n{}{}",
        append("first", "first", ""),
        r#"
[[stages.tasks]]
name = "optional"
plugin = "kit"
config = { action = "fail", message = "optional check failed" }
continue-on-error = true
"#
    );
    let project = Project::new(&pipeline);
    let release = run(&project, None, options()).await.unwrap();
    assert_eq!(release.state, ReleaseState::PartiallySucceeded);
    let tasks = &release.stage("dev").unwrap().attempts[0].tasks;
    assert_eq!(tasks[1].state, TaskState::Failed);
    assert_eq!(
        tasks[1].messages,
        [r#"plugin failed: "optional check failed""#]
    );
}

#[tokio::test]
async fn a_plugin_changed_after_the_release_was_created_is_refused() {
    let pipeline = format!(
        "{HEADER}\n[[stages]]\nname = \"prod\"\nafter = \"manual\"\n{}",
        append("deploy", "prod", "")
    );
    let project = Project::new(&pipeline);
    let release = run(&project, None, options()).await.unwrap();
    assert_eq!(
        release.state,
        ReleaseState::Active,
        "the manual stage waits"
    );

    // Someone swaps the component after the release was created.
    std::fs::copy(TEMPLATE, project.path().join("plugins/kit.wasm")).unwrap();
    let engine = project.engine();
    engine
        .apply(
            &release.name,
            Event::Deploy {
                stage: "prod".into(),
            },
            "tester",
            &Quiet,
        )
        .await
        .unwrap();
    let release = engine
        .drive(&release.name, Arc::new(Decide(None)), Arc::new(Quiet))
        .await
        .unwrap();
    let attempt = &release.stage("prod").unwrap().attempts[0];
    assert_eq!(attempt.state, StageState::Failed);
    let reason = attempt.reason.clone().unwrap();
    assert!(
        reason.contains("changed since release demo-1 was created"),
        "{reason}"
    );
    assert!(
        project.lines("markers.txt").is_empty(),
        "the swapped plugin never ran"
    );
}

#[tokio::test]
async fn secrets_are_masked_in_stored_logs_and_never_stored() {
    let pipeline = |source: &str| {
        format!(
            r#"{HEADER}
[variables]
token = {{ secret = true, {source} }}

[[stages]]
name = "dev"
[[stages.tasks]]
name = "echo"
plugin = "kit"
config = {{ action = "echo" }}
"#
        )
    };
    let project = Project::new(&pipeline(r#"from-env = "SLUICE_TEST_UNSET_SECRET""#));
    let release = run(&project, None, options()).await.unwrap();
    let reason = release.stage("dev").unwrap().attempts[0].tasks[0]
        .messages
        .join("");
    assert!(
        reason.contains("SLUICE_TEST_UNSET_SECRET, which is not set"),
        "{reason}"
    );

    let project = Project::new(&pipeline(r#"from-file = "token.txt""#));
    std::fs::write(project.path().join("token.txt"), "tok-8c1f-secret\n").unwrap();
    let release = run(&project, None, options()).await.unwrap();
    assert_eq!(release.state, ReleaseState::Succeeded);
    let store = Store::open(&project.data_dir()).unwrap();
    let log = store
        .log(&LogKey {
            release: &release.name,
            stage: "dev",
            attempt: 1,
            task: "echo",
        })
        .unwrap()
        .unwrap();
    assert!(log.iter().any(|l| l.message == "token is ***"), "{log:?}");
    let output = &release.stage("dev").unwrap().attempts[0].tasks[0].outputs;
    let echoed = output.iter().find(|o| o.name == "var.token").unwrap();
    assert!(echoed.secret && echoed.value == "***", "{echoed:?}");
    drop(store);
    let raw = std::fs::read(project.data_dir().join("sluice.redb")).unwrap();
    let needle = b"tok-8c1f-secret";
    assert!(
        !raw.windows(needle.len()).any(|w| w == needle),
        "the secret reached the store"
    );
}
