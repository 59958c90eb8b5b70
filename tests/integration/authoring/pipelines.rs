//! The languages together in pipelines: a Python stage hands an output variable to a
//! JavaScript stage; a JavaScript artifact source and a Python gate deploy a release.

use std::path::PathBuf;

use super::{command, js_probe, js_source, ok, python_gate, python_probe, sluice, work};
use crate::support::said;

/// A folder for one pipeline, holding `pipeline.toml`.
fn project(name: &str, pipeline: &str) -> PathBuf {
    let dir = work().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();
    dir
}

#[test]
fn a_python_stage_hands_an_output_variable_to_a_javascript_stage() {
    let pipeline = format!(
        r#"
version = 1
name = "polyglot"

[[stages]]
name = "build"
[[stages.tasks]]
name = "emit"
plugin = "{python}"
config = {{ mode = "emit", text = "made in Python" }}

[[stages]]
name = "ship"
after = ["build"]
[[stages.tasks]]
name = "write"
plugin = "{js}"
config = {{ mode = "write", path = "/out/got.txt", text = "JS got: $(emit.message)" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/out", guest = "/out", access = "rw" }}]
"#,
        python = python_probe().component.display(),
        js = js_probe().component.display(),
    );
    let dir = project("polyglot", &pipeline);
    let run = sluice(&dir, &["run", "pipeline.toml", "--approve", "all"]);
    assert_eq!(run.status.code(), Some(0), "{}", said(&run));
    let got = std::fs::read_to_string(dir.join("out/got.txt")).unwrap();
    assert_eq!(got, "JS got: made in Python");
}

#[test]
fn a_javascript_artifact_source_and_a_python_gate_deploy_the_newest_version() {
    let pipeline = format!(
        r#"
version = 1
name = "folders"

[artifacts.site]
source = "{source}"
config = {{ root = "/builds" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/builds", guest = "/builds" }}]

[[stages]]
name = "prod"
[[stages.tasks]]
name = "deploy"
plugin = "copy"
config = {{ from = "site", to = "/site", mirror = true }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/site", guest = "/site", access = "rw" }}]

[stages.post-gates]
interval = "1s"
timeout = "30s"
[[stages.post-gates.gates]]
name = "published"
plugin = "{gate}"
config = {{ file = "/site/pages/index.html", contains = "Version 1.10.0" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/site", guest = "/site" }}]
"#,
        source = js_source().component.display(),
        gate = python_gate().component.display(),
    );
    // The templates' own tests pass in their own runners.
    ok(
        command("python", &python_gate().dir).args(["-m", "pytest", "-q"]),
        "pytest",
    );
    ok(
        command("node", &js_source().dir).args(["--test", "src/"]),
        "node --test",
    );

    let dir = project("folders", &pipeline);
    for version in ["1.9.0", "1.10.0"] {
        let pages = dir.join("builds").join(version).join("pages");
        std::fs::create_dir_all(&pages).unwrap();
        std::fs::write(pages.join("index.html"), format!("Version {version}")).unwrap();
    }
    let run = sluice(&dir, &["run", "pipeline.toml", "--approve", "all"]);
    assert_eq!(run.status.code(), Some(0), "{}", said(&run));
    let page = std::fs::read_to_string(dir.join("site/pages/index.html")).unwrap();
    assert_eq!(
        page, "Version 1.10.0",
        "the source lists 1.10.0 as the newest"
    );

    // The gate reads the page it is granted and says what it misses.
    let gate = python_gate();
    let wrong = "file = \"/site/pages/index.html\"\ncontains = \"Version 2\"";
    let grant = format!("{}:/site", dir.join("site").display());
    let unhealthy = super::run_plugin(&gate.dir, &gate.component, wrong, &["--grant-dir", &grant]);
    let text = said(&unhealthy);
    assert_eq!(unhealthy.status.code(), Some(1), "{text}");
    assert!(text.contains("does not contain 'Version 2' yet"), "{text}");
}
