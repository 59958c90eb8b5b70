//! A server process that stops on SIGTERM: it takes no new requests, ends its streams, lets
//! the running task finish, commits its end and exits 0.

use std::time::Duration;

use serde_json::json;
use sluice::api::client::Client;

use crate::support::process::{serve, service_dir, wait_line};
use crate::support::{Latch, logs_pipeline, token};

#[test]
fn sigterm_stops_taking_requests_lets_the_running_task_finish_and_exits_0() {
    let dir = service_dir();
    let latch = Latch::start();
    std::fs::write(
        dir.path().join("pipelines/logs.toml"),
        logs_pipeline(&latch),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut child, address, lines) = serve(dir.path(), None);
    let rita = Client::new(&address, Some(token("rita"))).unwrap();
    let created = runtime
        .block_on(rita.post("/api/v1/pipelines/logs/releases", &json!({})))
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let release = created.json()["name"].as_str().unwrap().to_owned();
    // The task is running once its first line arrives.
    let vic = Client::new(&address, Some(token("vic"))).unwrap();
    let log =
        format!("/api/v1/releases/{release}/stages/build/attempts/1/tasks/wait/log?follow=true");
    let mut follow = runtime
        .block_on(vic.events(&log))
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    let first = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), follow.next()).await })
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.data.contains("waiting for"), "{first:?}");
    // A follower of the audit trail: a stream that never ends by itself.
    let mut audit = runtime
        .block_on(vic.events("/api/v1/audit?follow=true&limit=0"))
        .map_err(|e| format!("{e:?}"))
        .unwrap();

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_line(&lines, "stopping: no new requests");
    // Refused: the connection (the listener is closed) or, in the moment before it closes,
    // the request.
    let refused = runtime.block_on(vic.get("/api/v1/releases"));
    assert!(
        refused.as_ref().is_ok_and(|r| r.status == 503) || refused.is_err(),
        "a request after SIGTERM: {:?}",
        refused.map(|r| (r.status, r.text()))
    );

    // The audit stream ends, or the server could never finish draining.
    let ended = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(_)) = audit.next().await {}
        })
        .await
    });
    assert!(ended.is_ok(), "the audit stream outlived SIGTERM");

    // The task finishes (the test lets it), its end is committed, and the process exits 0.
    latch.open();
    let code = child.wait().unwrap();
    assert!(code.success(), "{code:?}");
    let store = sluice::store::Store::open(&dir.path().join("data")).unwrap();
    let release = store.release(&release).unwrap().unwrap();
    assert_eq!(
        release.state,
        sluice::core::ReleaseState::Succeeded,
        "{release:?}"
    );
}
