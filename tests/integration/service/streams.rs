//! Event streams: a task's log followed while it runs (then stored and archived the same),
//! and the audit stream that replays, follows and resumes after an id.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::Duration;

use serde_json::{Value, json};
use sluice::api::client::Events;
use sluice::service::config::ApiLimits;

use crate::support::Server;

/// The next event of a stream, within a bound.
fn next_event(server: &Server, events: &mut Events) -> sluice::api::client::ServerEvent {
    server
        .runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), events.next()).await })
        .expect("an event within 30s")
        .unwrap()
        .expect("the stream goes on")
}

#[test]
fn a_task_log_is_followed_while_it_runs_and_archived_with_the_release() {
    let server = Server::start("1h", ApiLimits::default());
    let reply = server.call(
        "rita",
        "POST",
        "/api/v1/pipelines/logs/releases",
        Some(json!({})),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let release = reply.json()["name"].as_str().unwrap().to_owned();
    let log = format!("/api/v1/releases/{release}/stages/build/attempts/1/tasks/wait/log");
    let mut follow = server.events("vic", &format!("{log}?follow=true"));

    // The first line arrives while the task still runs: nothing is stored yet.
    let first = next_event(&server, &mut follow);
    assert_eq!(first.event, "line");
    assert!(first.data.contains("waiting for http://"), "{first:?}");
    assert_eq!(server.call("vic", "GET", &log, None).status, 404);

    // The test lets the task finish; the rest of the log follows, then the end.
    server.latch.open();
    let second = next_event(&server, &mut follow);
    assert!(second.data.contains("released by http://"), "{second:?}");
    assert_eq!(next_event(&server, &mut follow).event, "end");

    // Followed, stored and archived logs say the same.
    let done = server.wait_stage(&release, "build", "succeeded");
    assert_eq!(done["state"], "succeeded");
    let stored = server.call("vic", "GET", &log, None);
    assert_eq!(stored.status, 200);
    assert_eq!(stored.text(), format!("{}\n{}\n", first.data, second.data));
    // Following a task that has ended replays its log and ends.
    let mut replay = server.events("vic", &format!("{log}?follow=true"));
    assert_eq!(next_event(&server, &mut replay).data, first.data);
    assert_eq!(next_event(&server, &mut replay).data, second.data);
    assert_eq!(next_event(&server, &mut replay).event, "end");

    let archive = server.call(
        "vic",
        "GET",
        &format!("/api/v1/releases/{release}/logs"),
        None,
    );
    assert_eq!(archive.status, 200, "{}", archive.text());
    assert_eq!(archive.header("content-type"), Some("application/gzip"));
    let mut files = BTreeMap::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.body.as_slice()));
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(name, text);
    }
    let names: Vec<&String> = files.keys().collect();
    assert_eq!(
        names,
        [
            &format!("{release}/build/1/after.log"),
            &format!("{release}/build/1/wait.log")
        ]
    );
    assert_eq!(files[&format!("{release}/build/1/wait.log")], stored.text());

    // No such task: 404, not a stream that never ends.
    let vic = server.client("vic");
    let missing = server.runtime.block_on(vic.events(&format!(
        "/api/v1/releases/{release}/stages/build/attempts/1/tasks/nope/log?follow=true"
    )));
    assert_eq!(missing.err().unwrap().unwrap().status, 404);
}

#[test]
fn the_audit_stream_replays_then_follows_and_resumes_after_an_id() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.release();
    let listed = server.get("vic", &format!("/api/v1/audit?release={release}"))["entries"].clone();
    let listed = listed.as_array().unwrap().clone();
    assert!(!listed.is_empty());
    let open = |query: &str| {
        server.events(
            "vic",
            &format!("/api/v1/audit?follow=true&release={release}{query}"),
        )
    };
    // The stream starts with what the list shows, ids being the entries' sequence numbers.
    let mut stream = open("");
    for entry in &listed {
        let event = next_event(&server, &mut stream);
        assert_eq!(event.event, "audit");
        assert_eq!(event.id, Some(entry["seq"].to_string()));
        assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), *entry);
    }
    // Then each new entry as it commits: a decision.
    let reply = server.approve_as("bob", &format!("{release}.qa.1.pre"));
    assert_eq!(reply.status, 200);
    let event = next_event(&server, &mut stream);
    let decided: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(decided["actor"], "bob");
    assert!(
        decided["what"]
            .as_str()
            .unwrap()
            .contains("approved by bob"),
        "{decided}"
    );

    // A client that lost the stream carries on after the last id it saw.
    let last = listed.last().unwrap()["seq"].to_string();
    let mut resumed = open(&format!("&after={last}"));
    assert_eq!(next_event(&server, &mut resumed).id, event.id);
}
