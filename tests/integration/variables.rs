//! Release-time variables, as an attacker tries them (issue #11.1): a releaser sets
//! `sluice.data-dir` (or any variable a grant's host path uses) to make write grants point at
//! a directory of their choosing. Only variables the pipeline declares `settable = true` may be
//! set — over the API (422 otherwise) and with `sluice run --var` (exit 2) — a refusal creates
//! nothing, and a grant's host path never takes a release-time value.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use serde_json::json;
use sluice::core::{self, Event, NewRelease, Release, ReleaseState};
use sluice::pipeline;
use sluice::plugin::{HostConfig, PluginHost};
use sluice::scheduler::{Engine, Observer, Pending};
use sluice::service::config::ApiLimits;
use sluice::store::Store;

use crate::engine::Project;
use crate::support::Server;

/// `space-game`: dev then test, each writing `$(site-title) in $(region)` into its site under
/// the data directory; only `site-title` is settable.
fn space_game(kit: &str) -> String {
    format!(
        r#"
version = 1
name = "space-game"

[variables]
site-title = {{ value = "Space Game", settable = true }}
region = "eu"

[[stages]]
name = "dev"
[[stages.tasks]]
name = "deploy-dev"
plugin = "{kit}"
config = {{ action = "write", path = "/site/index.html", content = "$(site-title) in $(region)" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/sites/dev", guest = "/site", access = "rw" }}]

[[stages]]
name = "test"
after = ["dev"]
[[stages.tasks]]
name = "deploy-test"
plugin = "{kit}"
config = {{ action = "write", path = "/site/index.html", content = "$(site-title) in $(region)" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/sites/test", guest = "/site", access = "rw" }}]
"#
    )
}

const REFUSED_DATA_DIR: &str = "variable `sluice.data-dir` cannot be set at release time: \
                                `sluice.*` is reserved; settable: site-title";

/// The attacker's directory, holding one file that must stay the only thing in it.
struct Target(tempfile::TempDir);

impl Target {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
        Self(dir)
    }

    fn path(&self) -> String {
        self.0.path().display().to_string()
    }

    fn assert_untouched(&self) {
        let mut names: Vec<String> = std::fs::read_dir(self.0.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["precious.txt"],
            "something was written to the target"
        );
        let kept = std::fs::read_to_string(self.0.path().join("precious.txt")).unwrap();
        assert_eq!(kept, "keep me");
    }
}

/// `sluice run` of the project's pipeline with `--var`s, approving everything.
fn sluice_run(project: &Project, vars: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .arg("run")
        .arg(project.pipeline())
        .args(["--approve", "all", "--data-dir"])
        .arg(project.data_dir());
    for var in vars {
        command.args(["--var", var]);
    }
    command.output().expect("sluice runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The releases stored in `data_dir`.
fn stored(data_dir: &Path) -> Vec<Release> {
    Store::open(data_dir).unwrap().releases().unwrap()
}

fn site(project: &Path, stage: &str) -> String {
    std::fs::read_to_string(project.join("sites").join(stage).join("index.html"))
        .unwrap_or_default()
}

#[test]
fn the_data_dir_cannot_be_set_at_release_time_over_the_api_or_the_cli() {
    let target = Target::new();

    // Over the API, as a releaser; a settable variable next to it does not help.
    let server = Server::start("1h", ApiLimits::default());
    let put = server.put("space-game", &space_game("./kit.wasm"));
    assert_eq!(put.status, 200, "{}", put.text());
    let path = "/api/v1/pipelines/space-game/releases";
    for variables in [
        json!({"sluice.data-dir": target.path()}),
        json!({"site-title": "Moon Base", "sluice.data-dir": target.path()}),
    ] {
        let reply = server.call("rita", "POST", path, Some(json!({"variables": variables})));
        assert_eq!(reply.status, 422, "{}", reply.text());
        assert_eq!(reply.json()["error"], REFUSED_DATA_DIR);
    }
    let list = server.get("vic", "/api/v1/releases?pipeline=space-game");
    assert_eq!(list["total"], 0, "no release was created: {list}");
    let sites = server.dir.path().join("pipelines/sites");
    assert!(!sites.exists(), "no task ran");
    target.assert_untouched();

    // With `sluice run --var`.
    let project = Project::new(&space_game("./plugins/kit.wasm"));
    let var = format!("sluice.data-dir={}", target.path());
    let run = sluice_run(&project, &[&var]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert_eq!(stderr(&run), format!("sluice: {REFUSED_DATA_DIR}\n"));
    assert!(
        stored(&project.data_dir()).is_empty(),
        "no release was stored"
    );
    assert!(!project.path().join("sites").exists(), "no task ran");
    target.assert_untouched();
}

#[test]
fn only_settable_variables_are_set_and_they_reach_the_task() {
    let refused = |name: &str, reason: &str| {
        format!("variable `{name}` cannot be set at release time: {reason}; settable: site-title")
    };
    let undeclared = refused("colour", "the pipeline declares no such variable");
    let not_settable = refused(
        "region",
        "the pipeline does not declare it `settable = true`",
    );

    let server = Server::start("1h", ApiLimits::default());
    assert_eq!(
        server.put("space-game", &space_game("./kit.wasm")).status,
        200
    );
    let path = "/api/v1/pipelines/space-game/releases";
    for (variables, error) in [
        (json!({"colour": "red"}), &undeclared),
        (json!({"region": "us"}), &not_settable),
    ] {
        let reply = server.call("rita", "POST", path, Some(json!({"variables": variables})));
        assert_eq!(reply.status, 422, "{}", reply.text());
        assert_eq!(reply.json()["error"], error.as_str());
    }
    let list = server.get("vic", "/api/v1/releases?pipeline=space-game");
    assert_eq!(list["total"], 0, "refusals create nothing: {list}");
    let reply = server.call(
        "rita",
        "POST",
        path,
        Some(json!({"variables": {"site-title": "Moon Base"}})),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let name = reply.json()["name"].as_str().unwrap().to_owned();
    server.wait_stage(&name, "test", "succeeded");
    let pipelines = server.dir.path().join("pipelines");
    assert_eq!(site(&pipelines, "dev"), "Moon Base in eu");
    assert_eq!(site(&pipelines, "test"), "Moon Base in eu");

    let project = Project::new(&space_game("./plugins/kit.wasm"));
    for (var, error) in [("colour=red", &undeclared), ("region=us", &not_settable)] {
        let run = sluice_run(&project, &[var]);
        assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
        assert_eq!(stderr(&run), format!("sluice: {error}\n"));
    }
    assert!(stored(&project.data_dir()).is_empty());
    let run = sluice_run(&project, &["site-title=Moon Base"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(site(project.path(), "dev"), "Moon Base in eu");
    assert_eq!(site(project.path(), "test"), "Moon Base in eu");
}

#[test]
fn a_settable_variable_in_a_grant_host_path_is_refused() {
    let pipeline = space_game("KIT").replace(
        "$(sluice.pipeline-dir)/sites/dev",
        "$(sluice.pipeline-dir)/sites/$(site-title)",
    );
    let message = "directory grant `$(sluice.pipeline-dir)/sites/$(site-title)` uses \
                   `$(site-title)`, which is settable at release time";

    let server = Server::start("1h", ApiLimits::default());
    let put = server.put("space-game", &pipeline.replace("KIT", "./kit.wasm"));
    assert_eq!(put.status, 422, "{}", put.text());
    let diagnostics = put.json()["diagnostics"].to_string();
    assert!(diagnostics.contains(message), "{diagnostics}");
    let created = server.call(
        "rita",
        "POST",
        "/api/v1/pipelines/space-game/releases",
        Some(json!({})),
    );
    assert_eq!(
        created.status,
        404,
        "the pipeline was not taken: {}",
        created.text()
    );

    let project = Project::new(&pipeline.replace("KIT", "./plugins/kit.wasm"));
    let run = sluice_run(&project, &["site-title=../../elsewhere"]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains(message), "{}", stderr(&run));
    assert!(!project.path().join("sites").exists(), "no task ran");
}

struct Quiet;
impl Observer for Quiet {}

/// A release stored with release-time overrides of its grants — before the rule existed, or
/// with a plan that declared the grant's variable settable — still writes where the plan says.
#[tokio::test]
async fn a_stored_release_with_overrides_cannot_move_its_grants() {
    let target = Target::new();
    let pipeline = r#"
version = 1
name = "drift"

[variables]
site-title = { value = "Space Game", settable = true }
site-dir = "sites"
region = "eu"

[[stages]]
name = "dev"
[[stages.tasks]]
name = "deploy-dev"
plugin = "./plugins/kit.wasm"
config = { action = "write", path = "/site/index.html", content = "$(site-title) in $(region)" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)/sites/dev", guest = "/site", access = "rw" }]
[[stages.tasks]]
name = "publish"
plugin = "./plugins/kit.wasm"
config = { action = "write", path = "/pub/index.html", content = "$(site-title) in $(region)" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)/$(site-dir)", guest = "/pub", access = "rw" }]
"#;
    let project = Project::new(pipeline);
    let mut plan = pipeline::load(&project.pipeline()).unwrap().plan;
    // What validation refuses: a variable a grant's host path uses, declared settable.
    plan.variables
        .iter_mut()
        .find(|v| v.name == "site-dir")
        .unwrap()
        .settable = true;
    let escape = format!(
        "../{}",
        target.0.path().file_name().unwrap().to_string_lossy()
    );
    let variables = [
        ("sluice.data-dir", target.path()),
        ("site-dir", escape),
        ("site-title", "Moon Base".into()),
        ("region", "us".into()),
    ]
    .map(|(n, v)| (n.to_owned(), v))
    .to_vec();
    let store = Store::open(&project.data_dir()).unwrap();
    let now = 1_800_000_000_000;
    let release = store
        .create_release(
            "drift",
            "mallory",
            |number| {
                let mut release = Release::new(NewRelease {
                    plan,
                    number,
                    creator: "mallory".into(),
                    description: None,
                    artifacts: vec![],
                    variables,
                    digests: vec![],
                    created_at: now,
                });
                core::apply(&mut release, Event::Created, now).unwrap();
                release
            },
            None,
        )
        .unwrap();
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(project.data_dir().join("cache")),
        ..HostConfig::default()
    })
    .unwrap();
    let engine = Arc::new(Engine::new(store, Arc::new(host), project.data_dir()));
    let done = engine
        .drive(&release.name, Arc::new(Pending), Arc::new(Quiet))
        .await
        .unwrap();
    assert_eq!(done.state, ReleaseState::Succeeded, "{done:?}");
    // The settable title reaches the task; `region` (not settable) keeps the plan's value.
    assert_eq!(site(project.path(), "dev"), "Moon Base in eu");
    let published = std::fs::read_to_string(project.path().join("sites/index.html")).unwrap();
    assert_eq!(
        published, "Moon Base in eu",
        "the grant stayed where the plan put it"
    );
    target.assert_untouched();
}

#[test]
fn a_task_is_handed_the_paths_of_its_sandbox_never_the_hosts() {
    let project = Project::new(
        r#"
version = 1
name = "paths"
[[stages]]
name = "dev"
[[stages.tasks]]
name = "look"
plugin = "./plugins/kit.wasm"
config = { action = "echo" }
grants.workspace = "rw"
"#,
    );
    let run = sluice_run(&project, &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let release = stored(&project.data_dir()).remove(0);
    let task = &release.stages[0].attempts[0].tasks[0];
    let output = |name: &str| {
        task.outputs
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.value.clone())
    };
    assert_eq!(
        output("var.sluice.workspace").as_deref(),
        Some("/workspace")
    );
    assert_eq!(output("var.sluice.release").as_deref(), Some("paths-1"));
    for host_only in ["var.sluice.data-dir", "var.sluice.pipeline-dir"] {
        assert_eq!(
            output(host_only),
            None,
            "{host_only} was handed to the task"
        );
    }
    let (data, dir) = (project.data_dir(), project.path().to_owned());
    for o in &task.outputs {
        assert!(
            !o.value.contains(&*data.to_string_lossy())
                && !o.value.contains(&*dir.to_string_lossy()),
            "the task learnt a host path: {} = {}",
            o.name,
            o.value
        );
    }
}
