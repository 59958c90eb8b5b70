//! `examples/agents/` as README.md's agents section runs it: its sluice.toml (two pools),
//! its `web` pipeline, one agent per pool on this machine offering the example's directory.

use std::path::Path;

use super::Site;
use crate::support::{Api, copy_tree, token};

#[test]
fn the_agents_example_deploys_each_region_on_its_own_pool() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agents");
    copy_tree(&example, dir.path());
    let config = dir.path().join("sluice.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"", 1);
    std::fs::write(&config, text).unwrap();
    let (eu, us) = (token("agent-eu"), token("agent-us"));
    let (server, base, lines) = crate::support::process::serve_with(
        dir.path(),
        None,
        &[
            ("SLUICE_ADMIN_TOKEN", &token("rita")),
            ("SLUICE_VIEWER_TOKEN", &token("vic")),
            ("SLUICE_EU_AGENT_TOKEN", &eu),
            ("SLUICE_US_AGENT_TOKEN", &us),
        ],
    );
    let api = Api {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base,
    };
    api.until_ready(&lines);
    let shelf = dir.path().join("pipelines");
    let site = Site {
        out: shelf.clone(),
        dir,
        server,
        api,
        lines,
    };
    let offered = shelf.display().to_string();
    let _eu = site.agent_in(
        "eu-1",
        "eu-prod",
        &eu,
        &["--capability", "region=eu", "--allow-dir", &offered],
    );
    let _us = site.agent_in(
        "us-1",
        "us-prod",
        &us,
        &["--capability", "region=us", "--allow-dir", &offered],
    );
    let release = site.release("web");
    site.api.wait_stage(&release, "us", "succeeded");
    let view = site.api.get("vic", &format!("/api/v1/releases/{release}"));
    for (stage, agent) in [("eu", "eu-1"), ("us", "us-1")] {
        let stage_view = view["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == stage)
            .unwrap();
        assert_eq!(
            stage_view["attempts"][0]["lease"]["agent"], agent,
            "{view:#}"
        );
        let page = shelf.join("sites").join(stage).join("index.html");
        assert!(
            std::fs::read_to_string(&page)
                .unwrap()
                .contains("Deployed by an agent")
        );
    }
}
