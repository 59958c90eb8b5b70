//! `examples/registry/` as its README section runs it, against a registry and a deploy API the
//! test starts on free ports (the pipeline's addresses rewritten to them): the site pushed with
//! the example's own script, the notify task pushed with `sluice plugin push`, then `sluice run`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::support::registry::Registry;
use crate::support::{Canned, Scripted, copy_tree};

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_registry_example_deploys_the_pushed_site_and_tells_the_deploy_api() {
    let registry = Registry::start();
    let api = Scripted::start();
    api.reply("/deployments", Canned::json(201, &json!({"id": "dep-1"})))
        .reply("/deployments", Canned::json(201, &json!({"id": "dep-2"})));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("registry");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry");
    copy_tree(&example.join("site"), &dir.join("site"));
    std::fs::copy(example.join("push-site.sh"), dir.join("push-site.sh")).unwrap();
    let pipeline = std::fs::read_to_string(example.join("registry-site.toml")).unwrap();
    assert!(pipeline.contains("127.0.0.1:5000") && pipeline.contains("127.0.0.1:8089"));
    let pipeline = pipeline
        .replace("127.0.0.1:5000", &registry.addr.to_string())
        .replace("127.0.0.1:8089", &api.addr.to_string());
    std::fs::write(dir.join("registry-site.toml"), pipeline).unwrap();
    let run = |program: &str, args: &[&str]| {
        let output = Command::new(program)
            .args(args)
            .current_dir(&dir)
            .env_remove("SLUICE_DATA_DIR")
            .output()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            said(&output)
        );
        said(&output)
    };

    let pushed = run("sh", &["push-site.sh", &registry.addr.to_string(), "1.0.0"]);
    assert!(
        pushed.contains("pushed demo/site:1.0.0 as sha256:"),
        "{pushed}"
    );
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let notify = format!("oci://{}/demo/notify:1.0", registry.addr);
    run(sluice, &["plugin", "push", "http-request", &notify]);
    let ran = run(sluice, &["run", "registry-site.toml", "--approve", "all"]);
    assert!(ran.contains("release registry-site-1 succeeded"), "{ran}");

    for stage in ["staging", "production"] {
        let page = std::fs::read_to_string(dir.join("www").join(stage).join("index.html")).unwrap();
        assert!(
            page.contains(&format!("Environment: {stage}, release registry-site-1.")),
            "{page}"
        );
        assert!(page.contains("<title>Space Game</title>"), "{page}");
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("www").join(stage).join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(config["Api"], json!({"Url": "/api", "Environment": stage}));
        assert!(dir.join("www").join(stage).join("css/site.css").is_file());
    }
    let told: Vec<serde_json::Value> = api
        .seen()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/deployments")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(
        told,
        [
            json!({"release": "registry-site-1", "stage": "staging"}),
            json!({"release": "registry-site-1", "stage": "production", "after": "dep-1"}),
        ]
    );
}
