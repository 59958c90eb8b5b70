//! A hostile plugin's text (controls, bidi characters, a newline and a forged engine line;
//! see `sandbox/terminal.rs`) as the service shows it: the text log, the log's server-sent
//! events, the `.tar.gz` archive, and the CLI's client commands (`logs`, `audit`, `release
//! show`, as tables and as JSON) print it escaped, one line per line.

use std::io::Read as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use sluice::service::config::ApiLimits;

use crate::sandbox::terminal::{FORGED, HOSTILE, assert_escaped, assert_shown};
use crate::support::{Server, token};

/// The hostile pipeline of `sandbox::terminal`, its plugin a file beside it on the server.
fn pipeline() -> String {
    crate::sandbox::terminal::PIPELINE.replace("plugin = \"kit\"", "plugin = \"./kit.wasm\"")
}

/// A server on which `hostile-1` has run to its end (qa succeeded with issues, prod failed).
fn ran() -> Server {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.put_and_release("hostile", &pipeline());
    assert_eq!(release, "hostile-1");
    server.wait_stage(&release, "prod", "failed");
    server
}

#[test]
fn the_text_log_its_events_and_the_archive_show_a_hostile_plugins_text_escaped() {
    let server = ran();
    let log = "/api/v1/releases/hostile-1/stages/qa/attempts/1/tasks/warn/log";
    let stored = server.call("vic", "GET", log, None);
    assert_eq!(stored.status, 200, "{}", stored.text());
    let text = stored.text();
    assert_escaped("the text log", &text, false);
    assert_shown("the text log", &text);

    // Each line is one event of one `data:` line (else the client would see a newline in
    // it), and the events say what the text log says.
    let mut events = server.events("vic", &format!("{log}?follow=true"));
    let mut lines = Vec::new();
    loop {
        let event = server
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), events.next()).await })
            .expect("an event within 30s")
            .unwrap()
            .expect("the stream goes on until `end`");
        if event.event == "end" {
            break;
        }
        assert_eq!(event.event, "line");
        assert!(!event.data.contains(['\n', '\r']), "{event:?}");
        assert_escaped("a log event", &event.data, false);
        lines.push(event.data);
    }
    assert_eq!(lines.concat(), text.replace('\n', ""));
    assert_eq!(lines.len(), text.lines().count());

    let archive = server.call("vic", "GET", "/api/v1/releases/hostile-1/logs", None);
    assert_eq!(archive.status, 200, "{}", archive.text());
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.body.as_slice()));
    let mut files = 0;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut file = String::new();
        entry.read_to_string(&mut file).unwrap();
        assert_escaped(&name, &file, false);
        assert_shown(&name, &file);
        files += 1;
    }
    assert_eq!(files, 2, "one file per task");
}

/// Whether a string in `value` contains `text`.
fn holds(value: &Value, text: &str) -> bool {
    match value {
        Value::String(s) => s.contains(text),
        Value::Array(items) => items.iter().any(|v| holds(v, text)),
        Value::Object(map) => map.values().any(|v| holds(v, text)),
        _ => false,
    }
}

fn client(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--server", &server.base, "--token", &token("vic")])
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("sluice runs")
}

#[test]
fn the_client_commands_print_a_hostile_plugins_text_escaped() {
    let server = ran();
    for args in [
        &["logs", "hostile-1"][..],
        &["audit", "--release", "hostile-1"],
        &["audit", "--release", "hostile-1", "--output", "json"],
        &["release", "show", "hostile-1", "--output", "json"],
    ] {
        let run = client(&server, args);
        let printed = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(run.status.success(), "{args:?}: {printed}{:?}", run.stderr);
        let what = args.join(" ");
        assert_escaped(&what, &printed, false);
        assert!(printed.contains("[space-game-1] prod"), "{what}: {printed}");
        if args.contains(&"json") {
            // The same JSON, without a raw control: what the plugin wrote, read back.
            let value: Value = serde_json::from_str(&printed).unwrap();
            assert!(holds(&value, HOSTILE), "{what}: {value}");
        } else {
            assert_shown(&what, &printed);
            assert!(!printed.lines().any(|l| l.starts_with(FORGED)), "{printed}");
        }
    }
}
