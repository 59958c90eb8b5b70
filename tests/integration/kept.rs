//! A release keeps its plugins (issue #14): the bytes it was created with are kept in the plugin
//! store by digest, and every later deployment of it runs them — after the file was rebuilt
//! into other bytes, and after it was deleted; a blob changed in the store is refused, naming
//! the digest.

use std::process::{Command, Output};

use sluice::plugin::Digest;

use crate::engine::Project;
use crate::support::said;

const PIPELINE: &str = r#"
version = 1
name = "kept"
[[stages]]
name = "dev"
[[stages.tasks]]
name = "step"
plugin = "./plugins/kit.wasm"
config = { action = "noop" }
"#;

fn sluice(project: &Project, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_DATA_DIR", project.data_dir())
        .output()
        .expect("sluice runs")
}

#[test]
fn a_release_runs_the_plugin_bytes_it_was_created_with_wherever_the_file_went() {
    let project = Project::new(PIPELINE);
    let pipeline = project.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    let kit = project.path().join("plugins/kit.wasm");
    let digest = Digest::of(&std::fs::read(&kit).unwrap());
    let run = sluice(&project, &["run", pipeline, "--approve", "all"]);
    assert_eq!(run.status.code(), Some(0), "{}", said(&run));
    let blob = project.data_dir().join("plugins/sha256").join(digest.hex());
    assert_eq!(std::fs::read(&blob).unwrap(), std::fs::read(&kit).unwrap());

    // The file is rebuilt into other bytes: the built-in `copy`, which refuses this config.
    let kit_path = kit.to_str().unwrap();
    let export = sluice(&project, &["plugin", "export", "copy", "-o", kit_path]);
    assert_eq!(export.status.code(), Some(0), "{}", said(&export));
    let newer = sluice(&project, &["run", pipeline, "--approve", "all"]);
    assert_eq!(
        newer.status.code(),
        Some(1),
        "a new release runs the new file: {}",
        said(&newer)
    );
    let deploy = || sluice(&project, &["deploy", "kept-1", "dev", "--approve", "all"]);
    let again = deploy();
    assert_eq!(
        again.status.code(),
        Some(0),
        "kept-1 runs its own bytes: {}",
        said(&again)
    );

    std::fs::remove_file(&kit).unwrap();
    let gone = deploy();
    assert_eq!(
        gone.status.code(),
        Some(0),
        "the file is gone: {}",
        said(&gone)
    );

    // A blob changed in the store is refused, naming the digest.
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes.push(0);
    std::fs::write(&blob, bytes).unwrap();
    let tampered = deploy();
    assert_eq!(tampered.status.code(), Some(1), "{}", said(&tampered));
    let said = said(&tampered);
    assert!(
        said.contains(&digest.to_string()),
        "names the digest: {said}"
    );
    assert!(said.contains("were changed"), "{said}");
}
