//! Idempotent retries: a request retried with its key gets the first answer and changes
//! nothing, even when the first answer was lost to a SIGKILL right after its commit.

use serde_json::{Value, json};
use sluice::api::client::Client;
use sluice::service::config::ApiLimits;

use crate::support::process::{serve, service_dir, wait_line};
use crate::support::{Server, token};

#[test]
fn an_idempotent_retry_returns_the_first_result_and_changes_nothing() {
    let server = Server::start("1h", ApiLimits::default());
    let rita = server.client("rita");
    let send = |key: &str, body: &Value| {
        server
            .runtime
            .block_on(rita.send(
                "POST",
                "/api/v1/pipelines/shop/releases",
                Some(body.to_string().into_bytes()),
                &[("idempotency-key", key)],
            ))
            .unwrap()
    };
    let body = json!({"description": "weekly"});
    let first = send("k-1", &body);
    assert_eq!(first.status, 201);
    let again = send("k-1", &body);
    assert_eq!(again.status, 201);
    assert_eq!(again.json(), first.json());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let list = server.get("vic", "/api/v1/releases");
    assert_eq!(list["total"], 1, "the retry created no second release");
    // The same key for another request is refused.
    let other = send("k-1", &json!({"description": "other"}));
    assert_eq!(other.status, 422);

    // A decision retried gets the original answer, not a conflict.
    let qa = format!("{}.qa.1.pre", first.json()["name"].as_str().unwrap());
    let bob = server.client("bob");
    let decide = || {
        server
            .runtime
            .block_on(bob.send(
                "POST",
                &format!("/api/v1/approvals/{qa}/approve"),
                Some(b"{}".to_vec()),
                &[("idempotency-key", "d-1")],
            ))
            .unwrap()
    };
    let first = decide();
    assert_eq!(first.status, 200, "{}", first.text());
    let retry = decide();
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json()["revision"], first.json()["revision"]);
}

#[test]
fn an_approval_committed_just_before_a_sigkill_is_there_after_restart_and_a_retry_replays_it() {
    let dir = service_dir();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Commit 1 creates the release; commit 2 is bob's approval. The server stops dead right
    // after it, before answering, and is SIGKILLed there.
    let (mut child, address, lines) = serve(dir.path(), Some(2));
    let rita = Client::new(&address, Some(token("rita"))).unwrap();
    let created = runtime
        .block_on(rita.post("/api/v1/pipelines/shop/releases", &json!({})))
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let release = created.json()["name"].as_str().unwrap().to_owned();
    let qa = format!("{release}.qa.1.pre");
    let approve = |client: &Client| {
        let client = client.clone();
        let path = format!("/api/v1/approvals/{qa}/approve");
        async move {
            client
                .send(
                    "POST",
                    &path,
                    Some(br#"{"comment":"ship it"}"#.to_vec()),
                    &[("idempotency-key", "approve-qa-once")],
                )
                .await
        }
    };
    let bob = Client::new(&address, Some(token("bob"))).unwrap();
    let unanswered = runtime.spawn(approve(&bob));
    wait_line(&lines, "sluice-fault: paused after commit 2");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let lost = runtime.block_on(unanswered).unwrap();
    assert!(lost.is_err(), "the first answer never arrived: {lost:?}");

    // Restarted on the same data: the approval is there.
    let (mut child, address, _lines) = serve(dir.path(), None);
    let vic = Client::new(&address, Some(token("vic"))).unwrap();
    let approval = runtime
        .block_on(vic.get(&format!("/api/v1/approvals/{qa}")))
        .unwrap()
        .json();
    assert_eq!(approval["state"], "approved", "{approval}");
    assert_eq!(approval["decisions"][0]["by"], "bob");

    // bob's client retries with the same key: the original result, nothing applied twice.
    let bob = Client::new(&address, Some(token("bob"))).unwrap();
    let retry = runtime.block_on(approve(&bob)).unwrap();
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let audit = runtime
        .block_on(vic.get(&format!("/api/v1/audit?release={release}&limit=1000")))
        .unwrap()
        .json();
    let decisions: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"].as_str().unwrap().contains("approved by bob"))
        .collect();
    assert_eq!(decisions.len(), 1, "{audit}");
    assert_eq!(
        retry.json()["revision"],
        decisions[0]["revision"],
        "the replay is the release as the approval left it"
    );
    let approval = runtime
        .block_on(vic.get(&format!("/api/v1/approvals/{qa}")))
        .unwrap()
        .json();
    assert_eq!(approval["decisions"].as_array().unwrap().len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
}
