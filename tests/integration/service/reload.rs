//! Users and tokens reload on SIGHUP without a restart: a revoked token is refused from then
//! on, a new one works, a running task is not interrupted; a bad new `sluice.toml` is refused
//! with its line and the users in force stay.

use serde_json::json;
use sluice::api::client::Client;
use sluice::service::hash_token;

use crate::support::process::{serve, service_dir, wait_line};
use crate::support::{Api, Latch, logs_pipeline, token};

/// The users of `service_dir`, with rita's token rotated to `token("rita-2")` and `extra`
/// appended.
fn rotated(extra: &str) -> String {
    let rita = format!("token-sha256 = \"{}\"", hash_token(&token("rita-2")));
    format!("{}{extra}", crate::support::service_toml(&rita))
}

fn hangup(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sighup_revokes_a_token_and_keeps_running_work_and_a_bad_file_changes_nothing() {
    let dir = service_dir();
    let latch = Latch::start();
    std::fs::write(
        dir.path().join("pipelines/logs.toml"),
        logs_pipeline(&latch),
    )
    .unwrap();
    let (child, base, lines) = serve(dir.path(), None);
    let api = Api {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base,
    };
    let status = |token: &str| {
        let client = Client::new(&api.base, Some(token.to_owned())).unwrap();
        api.runtime
            .block_on(client.get("/api/v1/pipelines"))
            .unwrap()
            .status
    };
    // A task that holds until the latch opens is running when the users change.
    let created = api.call(
        "rita",
        "POST",
        "/api/v1/pipelines/logs/releases",
        Some(json!({})),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let release = created.json()["name"].as_str().unwrap().to_owned();
    api.wait_stage(&release, "build", "in-progress");

    std::fs::write(dir.path().join("sluice.toml"), rotated("")).unwrap();
    hangup(child.id());
    wait_line(&lines, "sluice: reloaded 3 users");
    assert_eq!(status(&token("rita")), 401);
    assert_eq!(status(&token("rita-2")), 200);
    assert_eq!(status(&token("vic")), 200);

    // A bad file: refused with its line; the users in force stay.
    let bad = rotated(
        "[[users]]\nname = \"Mallory Smith\"\ntoken-sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nroles = [\"admin\"]\n",
    );
    let line = bad.lines().position(|l| l.contains("Mallory")).unwrap() + 1;
    std::fs::write(dir.path().join("sluice.toml"), &bad).unwrap();
    hangup(child.id());
    wait_line(&lines, "not reloading users");
    let why = wait_line(&lines, "Mallory Smith");
    assert!(
        why.contains(&format!(
            "sluice.toml:{line}: users[3].name: `Mallory Smith` is not a valid name"
        )),
        "{why}"
    );
    assert_eq!(status(&token("rita")), 401);
    assert_eq!(status(&token("rita-2")), 200);

    // The task was not interrupted: it goes on and the release succeeds.
    latch.open();
    let done = api.wait_stage(&release, "build", "succeeded");
    let tasks = done["stages"][0]["attempts"][0]["tasks"]
        .as_array()
        .unwrap();
    assert!(
        tasks.iter().all(|t| t["state"] == "succeeded"),
        "{tasks:#?}"
    );
    assert_eq!(done["state"], "succeeded", "{done}");
}
