//! The store's I/O faults as a user meets them, through a `sluice serve` or `sluice run`
//! process and the `SLUICE_FAULT_STORAGE` hook: a full disk (507, not ready, reads go on, writes
//! again once space returns, no restart) and a failed fsync (the process stops, a restart
//! recovers every acknowledged commit).

mod command;
mod disk;
mod fsync;

use std::path::Path;

use serde_json::{Value, json};
use sluice::api::client::Reply;

use crate::support::{Api, Approvals};

/// Creates a release of `pipeline` as rita; returns its name.
fn create(api: &Api, pipeline: &str) -> String {
    let created = api.call(
        "rita",
        "POST",
        &format!("/api/v1/pipelines/{pipeline}/releases"),
        Some(json!({})),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    created.json()["name"].as_str().unwrap().to_owned()
}

/// Bob's approval of `id` with an `Idempotency-Key`.
fn approve_with_key(api: &Api, id: &str, key: &str) -> Reply {
    let client = api.client("bob");
    let body = json!({"comment": "looks good"}).to_string().into_bytes();
    api.runtime
        .block_on(client.send(
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            Some(body),
            &[("idempotency-key", key)],
        ))
        .unwrap()
}

/// The one approval pending, once it is.
fn the_pending(api: &Api) -> String {
    let mut pending = Vec::new();
    api.wait("an approval pending", |api| {
        pending = api.pending();
        pending.len() == 1
    });
    pending.remove(0)
}

/// The audit trail's entries (all of them: the tests' trails are short).
fn audit(api: &Api) -> Vec<Value> {
    let trail = api.get("vic", "/api/v1/audit?limit=1000");
    trail["entries"].as_array().unwrap().clone()
}

/// Starts the fault: the hook fails the store's I/O while this file exists.
fn start_fault(path: &Path) {
    std::fs::write(path, "").unwrap();
}

/// Ends it.
fn end_fault(path: &Path) {
    std::fs::remove_file(path).unwrap();
}
