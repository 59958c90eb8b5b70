//! The client side of a served Sluice (in this process or a child): calls as a named user,
//! event streams, and the approval helpers over HTTP, woken by the audit stream.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::api::client::{Client, Events, Reply};

use super::{Approvals, token};

/// A Sluice API at `base`, called from `runtime`.
pub struct Api {
    pub runtime: tokio::runtime::Runtime,
    pub base: String,
}

impl Api {
    /// A client that authenticates as `who`.
    pub fn client(&self, who: &str) -> Client {
        Client::new(&self.base, Some(token(who))).unwrap()
    }

    pub fn call(&self, who: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        let client = self.client(who);
        self.runtime
            .block_on(client.send(method, path, body.map(|b| b.to_string().into_bytes()), &[]))
            .unwrap()
    }

    /// Waits (bounded) until the server at hand, whose stderr is `lines`, has recovered every
    /// unfinished release. `/readyz` turns 200 just before the server logs its
    /// `sluice-startup:` line, so a 503 now means the line is still to come.
    pub fn until_ready(&self, lines: &std::sync::mpsc::Receiver<String>) {
        if self.anonymous("/readyz").status != 200 {
            super::process::wait_line(lines, "sluice-startup:");
        }
        let ready = self.anonymous("/readyz");
        assert_eq!(ready.status, 200, "{}", ready.text());
    }

    /// A request without credentials.
    pub fn anonymous(&self, path: &str) -> Reply {
        let client = Client::new(&self.base, None).unwrap();
        self.runtime.block_on(client.get(path)).unwrap()
    }

    /// Opens an event stream as `who`; panics on a refusal.
    pub fn events(&self, who: &str, path: &str) -> Events {
        let client = self.client(who);
        self.runtime
            .block_on(client.events(path))
            .map_err(|e| format!("{e:?}"))
            .unwrap()
    }

    /// GETs `path` as `who`; panics unless 200.
    pub fn get(&self, who: &str, path: &str) -> Value {
        let reply = self.call(who, "GET", path, None);
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// `who` approves `id`, with a comment.
    pub fn approve_as(&self, who: &str, id: &str) -> Reply {
        self.call(
            who,
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            Some(json!({"comment": "looks good"})),
        )
    }

    /// Waits (bounded) until the release's stage is in `state`; returns the release.
    pub fn wait_stage(&self, release: &str, stage: &str, state: &str) -> Value {
        let mut seen = Value::Null;
        self.wait(&format!("stage {stage} of {release} is {state}"), |api| {
            seen = api.get("vic", &format!("/api/v1/releases/{release}"));
            let now = seen["stages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == stage)
                .map(|s| s["state"].clone());
            now.as_ref().and_then(Value::as_str) == Some(state)
        });
        seen
    }
}

impl Approvals for Api {
    fn pending(&self) -> Vec<String> {
        let list = self.call("vic", "GET", "/api/v1/approvals", None).json();
        let mut ids: Vec<String> = list["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// Approves as bob.
    fn approve(&self, id: &str) {
        let reply = self.approve_as("bob", id);
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
    }

    /// Woken by the audit stream.
    fn wait(&self, what: &str, mut ready: impl FnMut(&Self) -> bool) {
        let mut audit = self.events("vic", "/api/v1/audit?follow=true&limit=0");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self
                .runtime
                .block_on(async { tokio::time::timeout(left, audit.next()).await });
            assert!(
                matches!(next, Ok(Ok(Some(_)))),
                "never: {what} (pending: {:?})",
                self.pending()
            );
        }
    }
}
