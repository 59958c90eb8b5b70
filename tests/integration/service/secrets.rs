//! Secret outputs as a served Sluice shows them (issue #11.13): the release view, every task
//! log (stored, followed, archived) and the audit trail say `***`; the sealed value stays in
//! the store, which never holds the clear value either.

use std::io::Read as _;
use std::time::Duration;

use sluice::api::client::Events;
use sluice::service::config::ApiLimits;

use crate::secrets::{SECRET, holds_secret, vault};
use crate::support::Server;

/// Every event of a stream until `end` (bounded).
fn until_end(server: &Server, events: &mut Events) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let next = server
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), events.next()).await })
            .expect("an event within 30s")
            .unwrap()
            .expect("the stream goes on until `end`");
        if next.event == "end" {
            return seen;
        }
        seen.push(next.data);
    }
}

#[test]
fn the_api_shows_secret_outputs_and_their_logs_as_stars() {
    let server = Server::start("1h", ApiLimits::default());
    let pipelines = server.dir.path().join("pipelines");
    std::fs::create_dir_all(pipelines.join("secret")).unwrap();
    std::fs::write(pipelines.join("secret/value.txt"), SECRET).unwrap();
    let pipeline = vault(false).replace(r#"plugin = "kit""#, r#"plugin = "./kit.wasm""#);
    let release = server.put_and_release("vault", &pipeline);
    let view = server.wait_stage(&release, "prod", "succeeded");

    let shown = server.call("vic", "GET", &format!("/api/v1/releases/{release}"), None);
    let text = shown.text();
    assert!(!text.contains(SECRET), "{text}");
    assert!(
        !text.contains("sealed"),
        "the sealed value is the engine's: {text}"
    );
    let minted = &view["stages"][0]["attempts"][0]["tasks"][0];
    assert_eq!(minted["name"], "mint");
    assert_eq!(minted["outputs"][0]["name"], "token");
    assert_eq!(minted["outputs"][0]["value"], "***");
    assert_eq!(minted["outputs"][0]["secret"], true);
    let later = &view["stages"][1]["attempts"][0]["tasks"];
    let states: Vec<_> = later
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["state"])
        .collect();
    assert!(states.iter().all(|s| *s == "succeeded"), "{later}");

    for (stage, task, line) in [
        ("dev", "mint", "minted ***"),
        ("dev", "same-stage", "variable `mint.token` holds ***"),
        ("prod", "later-stage", "variable `mint.token` holds ***"),
        ("prod", "echo", "mint.token is ***"),
    ] {
        let log = format!("/api/v1/releases/{release}/stages/{stage}/attempts/1/tasks/{task}/log");
        let stored = server.call("vic", "GET", &log, None);
        assert_eq!(stored.status, 200, "{}", stored.text());
        assert!(stored.text().contains(line), "{task}: {}", stored.text());
        assert!(!holds_secret(&stored.body), "{task}: {}", stored.text());
        let mut follow = server.events("vic", &format!("{log}?follow=true"));
        let followed = until_end(&server, &mut follow);
        assert!(followed.iter().any(|l| l.contains(line)), "{followed:?}");
        assert!(!followed.iter().any(|l| l.contains(SECRET)), "{followed:?}");
    }

    let archive = server.call(
        "vic",
        "GET",
        &format!("/api/v1/releases/{release}/logs"),
        None,
    );
    assert_eq!(archive.status, 200, "{}", archive.text());
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(archive.body.as_slice())
        .read_to_end(&mut unpacked)
        .unwrap();
    assert!(unpacked.windows(3).any(|w| w == b"***"));
    assert!(!holds_secret(&unpacked), "the archive holds the secret");
    let audit = server.call("vic", "GET", "/api/v1/audit", None);
    assert!(!holds_secret(&audit.body), "{}", audit.text());

    let raw = std::fs::read(server.dir.path().join("data/sluice.redb")).unwrap();
    assert!(!holds_secret(&raw), "the secret reached the store file");
}
