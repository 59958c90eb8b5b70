//! Event streams are bounded over TCP: one that has been open `limits.stream-max` ends (its
//! place under `limits.streams-per-user` given back), and the client that resumes with
//! `Last-Event-ID` gets exactly what came after, for the audit trail and a task's log alike
//! (and `sluice logs --follow` does so by itself); an id with no successor is a 400.

use std::time::Duration;

use serde_json::Value;
use sluice::api::client::{Client, Events, ServerEvent};
use sluice::service::config::ApiLimits;

use crate::support::Server;
use crate::support::process::{Spawned, lines};

/// Streams end after a second; one stream a user.
fn limits() -> ApiLimits {
    ApiLimits {
        stream_max: Duration::from_secs(1),
        streams_per_user: 1,
        ..ApiLimits::default()
    }
}

/// The next event, or `None` when the server ended the stream, within a bound.
fn next(server: &Server, events: &mut Events) -> Option<ServerEvent> {
    server
        .runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), events.next()).await })
        .expect("an event or the end within 30s")
        .unwrap()
}

fn open(server: &Server, vic: &Client, path: &str, last: Option<&str>) -> Events {
    server
        .runtime
        .block_on(vic.events_after(path, last))
        .map_err(|e| format!("{e:?}"))
        .unwrap()
}

#[test]
fn an_audit_stream_ends_after_stream_max_and_resumes_after_its_last_event_id_losing_nothing() {
    let server = Server::start("1h", limits());
    let release = server.release();
    let vic = server.client("vic");
    let path = format!("/api/v1/audit?follow=true&release={release}");
    let mut first = open(&server, &vic, &path, None);

    // While it is open, vic's next stream is past the cap: 429, when to retry, and the key.
    let refused = server.runtime.block_on(vic.events(&path)).err().unwrap();
    let refused = refused.unwrap();
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("5"));
    let why = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(why.contains("limits.streams-per-user"), "{why}");

    // The stream sends what there is, then ends by itself once it has run its time.
    let mut seen = Vec::new();
    while let Some(event) = next(&server, &mut first) {
        seen.push(event);
    }
    assert!(!seen.is_empty());
    let last = seen.last().unwrap().id.clone().unwrap();

    // Something happens while no stream is open; the resumed stream starts with it.
    let reply = server.approve_as("bob", &format!("{release}.qa.1.pre"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let after = server.get(
        "vic",
        &format!("/api/v1/audit?release={release}&after={last}"),
    )["entries"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        after
            .iter()
            .any(|e| e["what"].as_str().unwrap().contains("approved by bob")),
        "{after:?}"
    );
    let mut resumed = open(&server, &vic, &path, Some(&last));
    for entry in &after {
        let event = next(&server, &mut resumed).expect("the entries after the last id");
        assert_eq!(event.id, Some(entry["seq"].to_string()));
        assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), *entry);
        seen.push(event);
    }
    // Both streams together: the release's trail from its start, no entry missed or twice.
    let full = server.get("vic", &format!("/api/v1/audit?release={release}"))["entries"].clone();
    let full: Vec<Option<String>> = full
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Some(e["seq"].to_string()))
        .collect();
    let ids: Vec<Option<String>> = seen.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, full[..ids.len()], "streamed {ids:?}, listed {full:?}");
}

#[test]
fn a_log_follow_ends_after_stream_max_and_resumes_after_its_last_line() {
    let server = Server::start("1h", limits());
    let reply = server.call(
        "rita",
        "POST",
        "/api/v1/pipelines/logs/releases",
        Some(serde_json::json!({})),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let release = reply.json()["name"].as_str().unwrap().to_owned();
    let log = format!("/api/v1/releases/{release}/stages/build/attempts/1/tasks/wait/log");
    let path = format!("{log}?follow=true");
    let vic = server.client("vic");

    // An id with no successor, and one that is not an id: 400, and no stream.
    for bad in [u64::MAX.to_string(), "one".to_owned()] {
        let refused = server
            .runtime
            .block_on(vic.events_after(&path, Some(&bad)))
            .err()
            .unwrap()
            .unwrap();
        assert_eq!(refused.status, 400, "{bad}: {}", refused.text());
        let why = refused.json()["error"].as_str().unwrap().to_owned();
        assert!(why.contains("Last-Event-ID"), "{why}");
    }

    // The task is held at its first line: the follow sends it, then ends at stream-max,
    // without `end` (the task has not ended).
    let mut first = open(&server, &vic, &path, None);
    let line = next(&server, &mut first).unwrap();
    assert_eq!(
        (line.event.as_str(), line.id.as_deref()),
        ("line", Some("1"))
    );
    assert!(line.data.contains("waiting for http://"), "{line:?}");
    assert_eq!(next(&server, &mut first), None);

    // The task goes on; resumed after line 1, the follow sends the rest once, then the end.
    server.latch.open();
    let mut resumed = open(&server, &vic, &path, Some("1"));
    let second = next(&server, &mut resumed).unwrap();
    assert_eq!(second.id.as_deref(), Some("2"));
    assert!(second.data.contains("released by http://"), "{second:?}");
    assert_eq!(next(&server, &mut resumed).unwrap().event, "end");
    assert_eq!(next(&server, &mut resumed), None);
    server.wait_stage(&release, "build", "succeeded");
    let stored = server.call("vic", "GET", &log, None);
    assert_eq!(stored.text(), format!("{}\n{}\n", line.data, second.data));
}

#[test]
fn sluice_logs_follow_carries_on_after_the_server_ends_its_stream_printing_each_line_once() {
    let server = Server::start("1h", limits());
    let reply = server.call(
        "rita",
        "POST",
        "/api/v1/pipelines/logs/releases",
        Some(serde_json::json!({})),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let release = reply.json()["name"].as_str().unwrap().to_owned();
    let mut cli = Spawned(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["logs", &release, "build", "wait", "--follow"])
            .args([
                "--server",
                &server.base,
                "--token",
                &crate::support::token("vic"),
            ])
            .env_remove("SLUICE_SERVER")
            .env_remove("SLUICE_TOKEN")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let printed = lines(cli.stdout.take().unwrap());
    let first = printed.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(first.contains("waiting for http://"), "{first}");

    // A follow of ada's, opened after the CLI's, has run its time: so has the CLI's, and the
    // CLI is following again from after line 1 when the task goes on.
    let ada = server.client("ada");
    let log = format!("/api/v1/releases/{release}/stages/build/attempts/1/tasks/wait/log");
    let mut later = open(&server, &ada, &format!("{log}?follow=true"), None);
    while next(&server, &mut later).is_some() {}
    server.latch.open();
    let second = printed.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(second.contains("released by http://"), "{second}");
    // Then the CLI ends by itself, having printed nothing twice.
    let status = cli.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(printed.recv_timeout(Duration::from_secs(60)).is_err());
    let stored = server.call("vic", "GET", &log, None);
    assert_eq!(stored.text(), format!("{first}\n{second}\n"));
}
