//! `http-request`: retries with backoff on chosen statuses and connection errors, no retry on
//! a status that is not chosen, outputs read from the JSON answer by pointer, and secrets in
//! its headers and URL kept out of its log.

use serde_json::json;
use sluice::core::{ReleaseState, TaskState};
use sluice::store::{LogKey, Store};

use super::{failure, sandbox};
use crate::secrets::{SECRET, create, drive, engine, holds_secret, project, task};
use crate::support::{Canned, Scripted, host, input, load, output};

fn call(server: &Scripted, extra: serde_json::Value) -> sluice::types::TaskInput {
    let mut config = json!({"url": server.url("/deployments"), "backoff": "10ms"});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    input(config)
}

#[tokio::test]
async fn retries_chosen_statuses_then_keeps_outputs_from_the_answer() {
    let server = Scripted::start();
    server
        .reply("/deployments", Canned::new(503, "warming up"))
        .reply(
            "/deployments",
            Canned::new(429, "slow down").header("retry-after", "0"),
        )
        .reply(
            "/deployments",
            Canned::json(
                201,
                &json!({"id": "dep-42", "status": {"ready": true}, "n": 3}),
            ),
        );
    let run = host()
        .run_task(
            &load("http-request"),
            sandbox(&[server.addr.to_string()], &[]),
            &call(
                &server,
                json!({
                    "method": "post",
                    "headers": {"content-type": "application/json", "x-team": "web"},
                    "body": r#"{"release": "web-7"}"#,
                    "retries": 3,
                    "outputs": {"deployment-id": "/id", "ready": "/status/ready", "n": "/n"},
                }),
            ),
        )
        .await;
    let report = run.result.unwrap();
    assert_eq!(output(&report, "status"), Some("201"));
    assert_eq!(output(&report, "deployment-id"), Some("dep-42"));
    assert_eq!(output(&report, "ready"), Some("true"));
    assert_eq!(output(&report, "n"), Some("3"));
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "two retries, then the success");
    for request in &seen {
        assert_eq!(request.method, "POST");
        assert_eq!(request.body, br#"{"release": "web-7"}"#);
        assert_eq!(request.header("x-team"), Some("web"));
    }
    let warnings: Vec<&str> = run
        .logs
        .iter()
        .map(|l| l.message.as_str())
        .filter(|m| m.contains("retrying in"))
        .collect();
    assert_eq!(warnings.len(), 2, "{:?}", run.logs);
    assert!(warnings[0].contains("-> 503 (try 1 of 4)"), "{warnings:?}");
}

#[tokio::test]
async fn a_status_that_is_not_chosen_is_not_retried_and_is_quoted() {
    let server = Scripted::start();
    server.reply("/deployments", Canned::new(404, "no app called web"));
    let run = host()
        .run_task(
            &load("http-request"),
            sandbox(&[server.addr.to_string()], &[]),
            &call(&server, json!({"retries": 5})),
        )
        .await;
    let message = failure(run.result);
    assert!(
        message.contains("returned status 404: no app called web"),
        "{message}"
    );
    assert_eq!(server.seen().len(), 1, "a 404 is not in `retry-on`");

    // The same status counts as success when the pipeline says so.
    let run = host()
        .run_task(
            &load("http-request"),
            sandbox(&[server.addr.to_string()], &[]),
            &call(&server, json!({"success": ["2xx", 404]})),
        )
        .await;
    assert_eq!(output(&run.result.unwrap(), "status"), Some("404"));
}

#[tokio::test]
async fn gives_up_after_its_retries_and_retries_connection_errors() {
    let server = Scripted::start();
    server.reply("/deployments", Canned::new(502, "bad gateway"));
    let run = host()
        .run_task(
            &load("http-request"),
            sandbox(&[server.addr.to_string()], &[]),
            &call(&server, json!({"retries": 2})),
        )
        .await;
    assert!(failure(run.result).contains("returned status 502"));
    assert_eq!(server.seen().len(), 3, "the first try and two retries");

    // Nothing listens on a port just freed: refused, retried, then reported.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let run = host()
        .run_task(
            &load("http-request"),
            sandbox(&[closed.to_string()], &[]),
            &input(json!({"url": format!("http://{closed}/x"), "retries": 2, "backoff": "10ms"})),
        )
        .await;
    let message = failure(run.result);
    assert!(message.contains("failed after 3 tries"), "{message}");
}

#[tokio::test]
async fn refuses_ungranted_hosts_and_bad_configuration() {
    let server = Scripted::start();
    server.reply("/deployments", Canned::new(200, "ok"));
    let plugin = load("http-request");
    let denied = host()
        .run_task(
            &plugin,
            sandbox(&[], &[]),
            &call(&server, json!({"retries": 3})),
        )
        .await;
    assert!(failure(denied.result).contains("not granted"));
    assert!(server.seen().is_empty(), "nothing left the sandbox");

    for (config, expected) in [
        (
            json!({"body": "a", "body-file": "b"}),
            "either `body` or `body-file`",
        ),
        (json!({"retries": 50}), "more than 20"),
        (json!({"success": ["7xx"]}), "neither a code"),
        (json!({"method": "GET /admin"}), "not an HTTP method"),
        (json!({"outputs": {"id": "id"}}), "not a JSON pointer"),
        (json!({"url": "file:///etc/passwd"}), "url:"),
        (json!({"timeout": "soon"}), "not a duration"),
    ] {
        let run = host()
            .run_task(
                &plugin,
                sandbox(&[server.addr.to_string()], &[]),
                &call(&server, config),
            )
            .await;
        let message = failure(run.result);
        assert!(message.contains(expected), "{expected}: {message}");
    }
    assert!(
        server.seen().is_empty(),
        "no bad configuration sent anything"
    );
}

#[tokio::test]
async fn a_missing_output_fails_the_task_and_says_where() {
    let server = Scripted::start();
    server.reply("/deployments", Canned::json(200, &json!({"id": "d-1"})));
    let run = host()
        .run_task(
            &load("http-request"),
            sandbox(&[server.addr.to_string()], &[]),
            &call(&server, json!({"outputs": {"url": "/links/self"}})),
        )
        .await;
    let message = failure(run.result);
    assert!(
        message.contains("outputs.url: the response has no value at `/links/self`"),
        "{message}"
    );
}

/// In a release: a secret variable in a header and in the URL's query reaches the API, and
/// no stored log line holds it.
#[tokio::test]
async fn a_secret_in_a_header_and_the_url_stays_out_of_the_log() {
    let server = Scripted::start();
    let path = format!("/hooks?key={SECRET}");
    server.reply(&path, Canned::json(200, &json!({"ok": true})));
    let pipeline = format!(
        r#"
version = 1
name = "hook"

[variables]
token = {{ secret = true, from-file = "secret/value.txt" }}

[[stages]]
name = "dev"
[[stages.tasks]]
name = "notify"
plugin = "http-request"
grants.hosts = ["{addr}"]
config = {{ method = "POST", url = "http://{addr}/hooks?key=$(token)", headers = {{ authorization = "Bearer $(token)" }}, body = "release $(sluice.release)" }}
"#,
        addr = server.addr
    );
    let project = project(&pipeline);
    let engine = engine(&project);
    let name = create(&engine, &project).await;
    let release = drive(&engine, &name, true).await;
    let notify = task(&release, "dev", "notify");
    assert_eq!(
        release.state,
        ReleaseState::Succeeded,
        "{:?}",
        notify.messages
    );
    assert_eq!(notify.state, TaskState::Succeeded);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, path, "the URL's secret reached the API");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(seen[0].body, b"release hook-1");
    drop(engine);

    let store = Store::open(&project.data_dir()).unwrap();
    let key = LogKey {
        release: &name,
        stage: "dev",
        attempt: 1,
        task: "notify",
    };
    let lines: Vec<String> = store
        .log(&key)
        .unwrap()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("POST http://") && l.contains("key=*** -> 200")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| holds_secret(l.as_bytes())),
        "{lines:?}"
    );
}
