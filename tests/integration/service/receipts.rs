//! Idempotency receipts cannot fill the disk: a refused request stores none (its retry is
//! evaluated again), an accepted change's receipt replays for the same request however it is
//! written and expires after `limits.receipt-ttl`, when the sweep deletes it.

use std::time::Duration;

use serde_json::Value;
use sluice::service::config::ApiLimits;

use crate::support::Server;

/// No rate limit in the way of a few hundred requests.
fn unthrottled(receipt_ttl: Duration) -> ApiLimits {
    ApiLimits {
        requests_per_second: 100_000,
        burst: 100_000,
        receipt_ttl,
        ..ApiLimits::default()
    }
}

/// `who` POSTs `body` (as written) to `path` with `Idempotency-Key: key`.
fn post(
    server: &Server,
    who: &str,
    path: &str,
    body: &str,
    key: &str,
) -> sluice::api::client::Reply {
    let client = server.client(who);
    let body = (!body.is_empty()).then(|| body.as_bytes().to_vec());
    server
        .runtime
        .block_on(client.send("POST", path, body, &[("idempotency-key", key)]))
        .unwrap()
}

/// The receipt count as `/metrics` says it.
fn receipts_metric(server: &Server) -> u64 {
    let text = server.call("vic", "GET", "/metrics", None).text();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("sluice_idempotency_receipts "))
        .unwrap_or_else(|| panic!("no sluice_idempotency_receipts in {text}"));
    line.parse().unwrap()
}

fn audit_total(server: &Server) -> usize {
    let audit = server.get("vic", "/api/v1/audit?limit=1000");
    audit["entries"].as_array().unwrap().len()
}

#[test]
fn refused_posts_with_fresh_keys_store_no_receipt_and_do_not_grow_the_store() {
    let server = Server::start("1h", unthrottled(Duration::from_secs(3600)));
    let release = server.release();
    let qa = format!("{release}.qa.1.pre");
    // Settled: the release waits for its qa approval, nothing else is being written.
    server.wait_stage(&release, "qa", "awaiting-approval");
    let file = server.dir.path().join("data").join("sluice.redb");
    let size = || std::fs::metadata(&file).unwrap().len();
    let (count, bytes, trail) = (server.service.receipt_count(), size(), audit_total(&server));
    assert_eq!((count, receipts_metric(&server)), (0, 0));

    // Each is refused inside the idempotent change (past the route's role check), where a
    // receipt used to be stored for it: a viewer and an approver of nothing deciding (403), a
    // missing approval and a missing release (404).
    let approve = format!("/api/v1/approvals/{qa}/approve");
    let missing = format!("/api/v1/approvals/{release}.qa.9.pre/approve");
    let comment = r#"{"comment":"ok"}"#;
    for i in 0..200 {
        for (who, path, body, status) in [
            ("vic", approve.as_str(), comment, 403),
            ("mallory", approve.as_str(), comment, 403),
            ("bob", missing.as_str(), comment, 404),
            ("rita", "/api/v1/releases/shop-999/abandon", "", 404),
        ] {
            let reply = post(&server, who, path, body, &format!("{who}-{i}"));
            assert_eq!(reply.status, status, "{who} {path}: {}", reply.text());
            assert_eq!(reply.header("idempotent-replayed"), None);
        }
    }

    // Not one receipt, as the store counts them and as /metrics says.
    assert_eq!(server.service.receipt_count(), count);
    assert_eq!(receipts_metric(&server), count);
    // The only other writes are the audited 403s, which the guard bounds (10 a client at once,
    // then one every 6 s: a few hundred bytes each), the health checks' empty commits, and
    // redb's bookkeeping of freed pages (measured: ~36 KB on a 72 KB file, 20 refusals
    // audited). 800 receipts of ~1.1 KB would have added ~880 KB.
    let recorded = audit_total(&server) - trail;
    let grown = size().saturating_sub(bytes);
    assert!(
        grown <= 256 << 10,
        "the store grew by {grown} bytes ({bytes} before; {recorded} refusals audited)"
    );
    // The release is as it was: nothing was decided or abandoned.
    let now = server.get("vic", &format!("/api/v1/releases/{release}"));
    assert_eq!(now["state"], "active", "{now}");
}

#[test]
fn a_refused_request_retried_with_its_key_is_evaluated_again() {
    let server = Server::start("1h", unthrottled(Duration::from_secs(3600)));
    let first = server.release();
    assert_eq!(first, "shop-1");
    // shop-2 does not exist yet: 404, and nothing kept for the key.
    let abandon = "/api/v1/releases/shop-2/abandon";
    let missing = post(&server, "rita", abandon, "", "abandon-2");
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(server.release(), "shop-2");
    // The same request with the same key: now it abandons shop-2, the first answer was not kept.
    let retried = post(&server, "rita", abandon, "", "abandon-2");
    assert_eq!(retried.status, 200, "{}", retried.text());
    assert_eq!(retried.header("idempotent-replayed"), None);
    assert_eq!(retried.json()["state"], "abandoned");
    // That answer changed something, so it is kept and replayed.
    let again = post(&server, "rita", abandon, "", "abandon-2");
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), retried.json());
    assert_eq!(server.service.receipt_count(), 1);
}

#[test]
fn the_same_request_written_differently_replays_and_a_changed_value_is_422() {
    let server = Server::start("1h", unthrottled(Duration::from_secs(3600)));
    let create = "/api/v1/pipelines/shop/releases";
    let first = post(
        &server,
        "rita",
        create,
        r#"{"description":"weekly","variables":{}}"#,
        "c-1",
    );
    assert_eq!(first.status, 201, "{}", first.text());
    let release = first.json()["name"].as_str().unwrap().to_owned();
    // Key order, whitespace, escapes: the same request.
    for same in [
        r#"{"variables":{},"description":"weekly"}"#,
        "{\n  \"description\" : \"weekly\",\n  \"variables\" : { }\n}",
        r#"{"description":"week\u006cy","variables":{}}"#,
    ] {
        let replay = post(&server, "rita", create, same, "c-1");
        assert_eq!(replay.status, 201, "{same}: {}", replay.text());
        assert_eq!(replay.header("idempotent-replayed"), Some("true"), "{same}");
        assert_eq!(replay.json(), first.json(), "{same}");
    }
    let other = post(
        &server,
        "rita",
        create,
        r#"{"description":"monthly","variables":{}}"#,
        "c-1",
    );
    assert_eq!(other.status, 422, "{}", other.text());
    assert!(
        other.text().contains("used for a different request"),
        "{}",
        other.text()
    );
    assert_eq!(server.get("vic", "/api/v1/releases")["total"], 1);

    // The issue's case: a decision's comment with and without a space; an explicit null.
    let approve = format!("/api/v1/approvals/{release}.qa.1.pre/approve");
    let approved = post(&server, "bob", &approve, r#"{"comment":"ok"}"#, "a-1");
    assert_eq!(approved.status, 200, "{}", approved.text());
    for same in [
        r#"{"comment": "ok"}"#,
        r#"{ "defer-until": null, "comment":"ok" }"#,
    ] {
        let replay = post(&server, "bob", &approve, same, "a-1");
        assert_eq!(replay.status, 200, "{same}: {}", replay.text());
        assert_eq!(replay.header("idempotent-replayed"), Some("true"), "{same}");
    }
    let changed = post(&server, "bob", &approve, r#"{"comment":"ok!"}"#, "a-1");
    assert_eq!(changed.status, 422, "{}", changed.text());

    // A route whose body is empty: nothing, `{}` and `null` are one request; another path
    // (the release) with the same key is another request, refused before it is looked up.
    let abandon = format!("/api/v1/releases/{release}/abandon");
    let abandoned = post(&server, "rita", &abandon, "", "ab-1");
    assert_eq!(abandoned.status, 200, "{}", abandoned.text());
    for same in ["{}", " null ", "{ }"] {
        let replay = post(&server, "rita", &abandon, same, "ab-1");
        assert_eq!(replay.status, 200, "{same:?}: {}", replay.text());
        assert_eq!(
            replay.header("idempotent-replayed"),
            Some("true"),
            "{same:?}"
        );
    }
    let elsewhere = post(
        &server,
        "rita",
        "/api/v1/releases/shop-99/abandon",
        "",
        "ab-1",
    );
    assert_eq!(elsewhere.status, 422, "{}", elsewhere.text());
    assert_eq!(server.service.receipt_count(), 3, "one receipt a change");
    assert_eq!(receipts_metric(&server), 3);
}

#[test]
fn an_accepted_changes_receipt_is_swept_after_the_ttl_and_its_key_is_free_again() {
    let server = Server::start("1h", unthrottled(Duration::from_secs(1)));
    let create = "/api/v1/pipelines/shop/releases";
    let mut stored = server.service.store().receipts_stored();
    let first = post(&server, "rita", create, "{}", "once");
    assert_eq!(first.status, 201, "{}", first.text());
    // The count changed (it changes only when it differs): the change stored its receipt.
    assert!(stored.has_changed().unwrap(), "no receipt was stored");
    // The sweep runs every second here; it deletes the receipt once it is a second old.
    // (The guard wait_for returns holds the count's lock: let it go at once.)
    let swept = server.runtime.block_on(async {
        let zero = stored.wait_for(|n| *n == 0);
        matches!(
            tokio::time::timeout(Duration::from_secs(60), zero).await,
            Ok(Ok(_))
        )
    });
    assert!(swept, "the receipt was never swept");
    assert_eq!(receipts_metric(&server), 0);
    // The key is free: the same request is a new change, not a replay.
    let again = post(&server, "rita", create, "{}", "once");
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), None);
    assert_ne!(again.json()["name"], first.json()["name"]);
    let list: Value = server.get("vic", "/api/v1/releases");
    assert_eq!(list["total"], 2, "{list}");
}
