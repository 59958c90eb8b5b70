//! Service mode against a real server on 127.0.0.1: authentication and roles, the approval
//! rules, racing decisions, idempotent retries, expiry, strict bodies and limits.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::api::client::{Client, Events, Reply};
use sluice::service::{Role, Service, ServiceConfig, User, config::ApiLimits, hash_token};

use crate::support::{Latch, Spawned, TESTKIT};

/// Two stages: `qa` (pre-approval by alice or the approvers group, with a timeout) then
/// `prod` (pre-approval by alice and bob, in any order).
const PIPELINE: &str = r#"
version = 1
name = "shop"

[[stages]]
name = "qa"
pre-approval = { approvers = ["alice", "group:approvers"], timeout = "TIMEOUT" }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }

[[stages]]
name = "prod"
after = ["qa"]
pre-approval = { approvers = ["alice", "bob"], policy = "all" }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

/// One stage, two tasks: `wait` logs, waits until `latch` lets it go, logs again; `after`
/// does nothing.
fn logs_pipeline(latch: &Latch) -> String {
    format!(
        r#"
version = 1
name = "logs"

[[stages]]
name = "build"
[[stages.tasks]]
name = "wait"
plugin = "./kit.wasm"
config = {{ action = "hold", url = "{}" }}
grants.hosts = ["{}"]
[[stages.tasks]]
name = "after"
plugin = "./kit.wasm"
config = {{ action = "noop" }}
"#,
        latch.url(),
        latch.addr
    )
}

struct Server {
    _dir: tempfile::TempDir,
    /// Holds the `logs` pipeline's `wait` task until opened.
    latch: Latch,
    base: String,
    runtime: tokio::runtime::Runtime,
}

fn user(name: &str, roles: &[Role], groups: &[&str]) -> User {
    User {
        name: name.into(),
        roles: roles.to_vec(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

impl Server {
    fn start(timeout: &str, limits: ApiLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pipelines = dir.path().join("pipelines");
        std::fs::create_dir_all(&pipelines).unwrap();
        std::fs::copy(TESTKIT, pipelines.join("kit.wasm")).unwrap();
        std::fs::write(
            pipelines.join("shop.toml"),
            PIPELINE.replace("TIMEOUT", timeout),
        )
        .unwrap();
        let latch = Latch::start();
        std::fs::write(pipelines.join("logs.toml"), logs_pipeline(&latch)).unwrap();
        let mut tokens = BTreeMap::new();
        for u in [
            user("ada", &[Role::Admin], &[]),
            user("rita", &[Role::Releaser], &[]),
            user("alice", &[Role::Approver, Role::Releaser], &[]),
            user("bob", &[Role::Approver], &["approvers"]),
            user("carl", &[Role::Approver], &["approvers"]),
            user("mallory", &[Role::Approver], &[]),
            user("vic", &[Role::Viewer], &[]),
        ] {
            tokens.insert(hash_token(&token(&u.name)), u);
        }
        let config = ServiceConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("data"),
            pipelines,
            tokens,
            limits,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let base = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let service = Service::start(config).unwrap();
            tokio::spawn(sluice::api::serve(
                listener,
                service,
                std::future::pending(),
            ));
            base
        });
        Self {
            _dir: dir,
            latch,
            base,
            runtime,
        }
    }

    fn client(&self, who: &str) -> Client {
        Client::new(&self.base, Some(token(who))).unwrap()
    }

    fn call(&self, who: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        let client = self.client(who);
        self.runtime
            .block_on(client.send(method, path, body.map(|b| b.to_string().into_bytes()), &[]))
            .unwrap()
    }

    /// A request without credentials.
    fn anonymous(&self, path: &str) -> Reply {
        let client = Client::new(&self.base, None).unwrap();
        self.runtime.block_on(client.get(path)).unwrap()
    }

    /// Opens an event stream as `who`; panics on a refusal.
    fn events(&self, who: &str, path: &str) -> Events {
        let client = self.client(who);
        self.runtime
            .block_on(client.events(path))
            .map_err(|e| format!("{e:?}"))
            .unwrap()
    }

    fn get(&self, who: &str, path: &str) -> Value {
        let reply = self.call(who, "GET", path, None);
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// Creates a release of `shop` as rita; returns its name.
    fn release(&self) -> String {
        let reply = self.call(
            "rita",
            "POST",
            "/api/v1/pipelines/shop/releases",
            Some(json!({})),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["name"].as_str().unwrap().to_owned()
    }

    /// Waits (bounded) until the release's stage is in `state`: checks the release after each
    /// entry of its audit stream.
    /// An admin adds pipeline `name` through the API; rita creates a release of it.
    fn put_and_release(&self, name: &str, pipeline: &str) -> String {
        let put = self
            .runtime
            .block_on(self.client("ada").send(
                "PUT",
                &format!("/api/v1/pipelines/{name}"),
                Some(pipeline.as_bytes().to_vec()),
                &[],
            ))
            .unwrap();
        assert_eq!(put.status, 200, "{}", put.text());
        let path = format!("/api/v1/pipelines/{name}/releases");
        let created = self.call("rita", "POST", &path, Some(json!({})));
        assert_eq!(created.status, 201, "{}", created.text());
        created.json()["name"].as_str().unwrap().to_owned()
    }

    fn wait_stage(&self, release: &str, stage: &str, state: &str) -> Value {
        let vic = self.client("vic");
        self.runtime.block_on(async {
            let mut audit = vic
                .events(&format!(
                    "/api/v1/audit?follow=true&release={release}&limit=0"
                ))
                .await
                .map_err(|e| format!("{e:?}"))
                .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let reply = vic
                    .get(&format!("/api/v1/releases/{release}"))
                    .await
                    .unwrap();
                assert_eq!(reply.status, 200, "{}", reply.text());
                let r = reply.json();
                let now = r["stages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["name"] == stage)
                    .map(|s| s["state"].clone());
                if now.as_ref().and_then(Value::as_str) == Some(state) {
                    return r;
                }
                let next = tokio::time::timeout_at(deadline, audit.next()).await;
                let Ok(Ok(Some(_))) = next else {
                    panic!("stage {stage} of {release} never became {state}: {now:?} ({next:?})");
                };
            }
        })
    }
}

fn token(user: &str) -> String {
    format!("test-token-of-{user}-0123456789")
}

fn approve(server: &Server, who: &str, id: &str) -> Reply {
    server.call(
        who,
        "POST",
        &format!("/api/v1/approvals/{id}/approve"),
        Some(json!({"comment": "looks good"})),
    )
}

#[test]
fn create_list_approve_and_the_release_completes() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.release();
    let pending = server.get("bob", "/api/v1/approvals?approver=me");
    let ids: Vec<&str> = pending["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let qa = format!("{release}.qa.1.pre");
    assert_eq!(
        ids,
        [qa.as_str()],
        "bob sees qa's approval through his group"
    );
    assert_eq!(
        server.get("mallory", "/api/v1/approvals?approver=me")["approvals"],
        json!([])
    );

    let reply = approve(&server, "bob", &qa);
    assert_eq!(reply.status, 200, "{}", reply.text());
    server.wait_stage(&release, "prod", "awaiting-approval");
    let prod = format!("{release}.prod.1.pre");
    assert_eq!(approve(&server, "alice", &prod).status, 200);
    // One of two under `all`: still pending.
    assert_eq!(
        server.get("vic", &format!("/api/v1/approvals/{prod}"))["state"],
        "pending"
    );
    assert_eq!(approve(&server, "bob", &prod).status, 200);
    let done = server.wait_stage(&release, "prod", "succeeded");
    assert_eq!(done["state"], "succeeded");

    // The audit trail names every decision with its actor and revision.
    let audit = server.get("vic", &format!("/api/v1/audit?release={release}"));
    let decisions: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"].as_str().unwrap().contains("approved by"))
        .map(|e| {
            (
                e["actor"].as_str().unwrap().into(),
                e["what"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(decisions.len(), 3, "{decisions:?}");
    assert_eq!(decisions[0].0, "bob");
    assert!(decisions[0].1.contains("looks good"));

    // The task's log is there as text.
    let task = done["stages"][0]["attempts"][0]["tasks"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = server.call(
        "vic",
        "GET",
        &format!("/api/v1/releases/{release}/stages/qa/attempts/1/tasks/{task}/log"),
        None,
    );
    assert_eq!(log.status, 200, "{}", log.text());

    // Prometheus metrics count what happened: two tasks timed, nothing pending or queued.
    let metrics = server.call("vic", "GET", "/metrics", None).text();
    for line in [
        "sluice_task_duration_seconds_count 2",
        "sluice_pending_approvals 0",
        "sluice_queue_depth 0",
        "sluice_releases{state=\"succeeded\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
}

#[test]
fn unauthenticated_is_401_and_unauthorized_is_403() {
    let server = Server::start("1h", ApiLimits::default());
    let reply = server.anonymous("/api/v1/releases");
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        server
            .call("nobody", "GET", "/api/v1/releases", None)
            .status,
        401
    );

    let release = server.release();
    let qa = format!("{release}.qa.1.pre");
    // Deciding: a viewer and a releaser lack the role; an approver not listed is refused;
    // the release's creator may not approve unless the stage allows it.
    for who in ["vic", "rita", "mallory"] {
        let reply = approve(&server, who, &qa);
        assert_eq!(reply.status, 403, "{who}: {}", reply.text());
    }
    let own = server.call(
        "alice",
        "POST",
        "/api/v1/pipelines/shop/releases",
        Some(json!({})),
    );
    let own_qa = format!("{}.qa.1.pre", own.json()["name"].as_str().unwrap());
    let reply = approve(&server, "alice", &own_qa);
    assert_eq!(reply.status, 403);
    assert!(
        reply.text().contains("created this release"),
        "{}",
        reply.text()
    );
    // An admin override is audited as such; a non-admin cannot override.
    let reply = server.call(
        "bob",
        "POST",
        &format!("/api/v1/approvals/{own_qa}/approve"),
        Some(json!({"override": true})),
    );
    assert_eq!(reply.status, 403);
    let reply = server.call(
        "ada",
        "POST",
        &format!("/api/v1/approvals/{own_qa}/approve"),
        Some(json!({"override": true, "comment": "hotfix"})),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let audit = server.get("vic", "/api/v1/audit");
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| { e["actor"] == "ada" && e["what"].as_str().unwrap().contains("override") })
    );
}

#[test]
fn a_hundred_racing_decisions_make_exactly_one_transition() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.release();
    let qa = format!("{release}.qa.1.pre");
    let replies: Vec<Reply> = server.runtime.block_on(async {
        let mut calls = Vec::new();
        for i in 0..100 {
            let who = ["alice", "bob", "carl"][i % 3];
            let verb = if i % 2 == 0 { "approve" } else { "reject" };
            let client = Client::new(&server.base, Some(token(who))).unwrap();
            let path = format!("/api/v1/approvals/{qa}/{verb}");
            calls.push(tokio::spawn(async move {
                client
                    .post(&path, &json!({"comment": format!("call {i}")}))
                    .await
                    .unwrap()
            }));
        }
        let mut replies = Vec::new();
        for call in calls {
            replies.push(call.await.unwrap());
        }
        replies
    });
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let conflicts: Vec<&Reply> = replies.iter().filter(|r| r.status == 409).collect();
    assert_eq!(ok, 1, "exactly one decision applies");
    assert_eq!(conflicts.len(), 99);
    // A loser hears the state the approval is in now.
    let state = conflicts[0].json()["approval"]["state"].clone();
    assert!(state == "approved" || state == "rejected", "{state}");
    let approval = server.get("vic", &format!("/api/v1/approvals/{qa}"));
    assert_eq!(approval["decisions"].as_array().unwrap().len(), 1);
    let audit = server.get("vic", &format!("/api/v1/audit?release={release}"));
    let decided = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["what"]
                .as_str()
                .unwrap()
                .contains("qa: pre-deployment approval")
        })
        .count();
    assert_eq!(decided, 1);
}

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
fn an_approval_nobody_decides_expires_and_stops_the_deployment() {
    let server = Server::start("300ms", ApiLimits::default());
    let release = server.release();
    let r = server.wait_stage(&release, "qa", "rejected");
    let approval = server.get("vic", &format!("/api/v1/approvals/{release}.qa.1.pre"));
    assert_eq!(approval["state"], "expired");
    assert_eq!(r["state"], "failed");
    assert_eq!(
        server.get("vic", &format!("/api/v1/releases/{release}"))["stages"][1]["state"],
        "not-started"
    );
}

#[test]
fn bad_requests_get_errors_that_say_what_to_fix() {
    let limits = ApiLimits {
        body_bytes: 1024,
        requests_per_second: 1,
        burst: 40,
        ..ApiLimits::default()
    };
    let server = Server::start("1h", limits);
    let reply = server.call(
        "rita",
        "POST",
        "/api/v1/pipelines/shop/releases",
        Some(json!({"descripton": "typo"})),
    );
    assert_eq!(reply.status, 400);
    assert!(
        reply.text().contains("unknown field `descripton`"),
        "{}",
        reply.text()
    );

    let big = json!({"description": "x".repeat(4096)});
    let reply = server.call("rita", "POST", "/api/v1/pipelines/shop/releases", Some(big));
    assert_eq!(reply.status, 413, "{}", reply.text());

    let reply = server.call("ada", "PUT", "/api/v1/pipelines/shop", None);
    assert!(
        reply.status == 422 || reply.status == 400,
        "{}",
        reply.text()
    );
    let reply = server.call("vic", "GET", "/api/v1/releases/nope-1", None);
    assert_eq!(reply.status, 404);
    assert!(reply.header("x-request-id").is_some());

    // The rate limit: a burst of 40, then 429 with Retry-After.
    let vic = server.client("vic");
    let statuses: Vec<Reply> = server.runtime.block_on(async {
        let mut out = Vec::new();
        for _ in 0..60 {
            out.push(vic.get("/api/v1/pipelines").await.unwrap());
        }
        out
    });
    let limited = statuses.iter().find(|r| r.status == 429).expect("a 429");
    assert!(limited.header("retry-after").is_some());
}

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
    let reply = approve(&server, "bob", &format!("{release}.qa.1.pre"));
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

#[test]
fn the_openapi_document_describes_every_route() {
    let server = Server::start("1h", ApiLimits::default());
    let reply = server.anonymous("/api/v1/openapi.json");
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/pipelines", &["get"][..]),
        ("/api/v1/pipelines/{name}", &["get", "put"]),
        ("/api/v1/pipelines/{name}/validate", &["post"]),
        ("/api/v1/pipelines/{name}/releases", &["post"]),
        ("/api/v1/releases", &["get"]),
        ("/api/v1/releases/{id}", &["get"]),
        ("/api/v1/releases/{id}/abandon", &["post"]),
        ("/api/v1/releases/{id}/stages/{stage}/deploy", &["post"]),
        ("/api/v1/releases/{id}/stages/{stage}/cancel", &["post"]),
        (
            "/api/v1/releases/{id}/stages/{stage}/break-glass",
            &["post"],
        ),
        ("/api/v1/releases/{id}/logs", &["get"]),
        (
            "/api/v1/releases/{id}/stages/{stage}/attempts/{attempt}/tasks/{task}/log",
            &["get"],
        ),
        ("/api/v1/approvals", &["get"]),
        ("/api/v1/approvals/{id}", &["get"]),
        ("/api/v1/approvals/{id}/approve", &["post"]),
        ("/api/v1/approvals/{id}/reject", &["post"]),
        ("/api/v1/approvals/{id}/reassign", &["post"]),
        ("/api/v1/audit", &["get"]),
    ] {
        for method in methods {
            let op = &paths[path][*method];
            assert!(op.is_object(), "{method} {path} is not in the document");
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path} documents no 401"
            );
        }
    }
    // The documented shapes are the served ones: a release has the fields the schema names.
    let schema = &doc["components"]["schemas"]["ReleaseView"]["properties"];
    let release = server.release();
    let served = server.get("vic", &format!("/api/v1/releases/{release}"));
    let mut documented: Vec<&String> = schema.as_object().unwrap().keys().collect();
    let mut fields: Vec<&String> = served.as_object().unwrap().keys().collect();
    documented.sort();
    fields.sort();
    assert_eq!(documented, fields);
}

#[test]
fn every_role_against_every_endpoint() {
    let server = Server::start("1h", ApiLimits::default());
    // Who may call what. A permitted call may still be refused for what it asks (409 for a
    // stage not in a state to deploy, 404 for a log not written yet): only 401 and 403 say
    // "not allowed". Each mutating call gets a fresh release, so no call depends on another.
    const ADMIN: &str = "ada";
    const RELEASER: &str = "rita";
    const APPROVER: &str = "bob";
    const VIEWER: &str = "vic";
    const EVERYONE: [&str; 4] = [ADMIN, RELEASER, APPROVER, VIEWER];
    let (admin, releaser, approver, everyone) = (ADMIN, RELEASER, APPROVER, EVERYONE);
    let cases: &[(&str, &str, &[&str])] = &[
        ("GET", "/api/v1/pipelines", &everyone),
        ("GET", "/api/v1/pipelines/shop", &everyone),
        ("PUT", "/api/v1/pipelines/shop", &[admin]),
        (
            "POST",
            "/api/v1/pipelines/shop/validate",
            &[admin, releaser],
        ),
        (
            "POST",
            "/api/v1/pipelines/shop/releases",
            &[admin, releaser],
        ),
        ("GET", "/api/v1/releases", &everyone),
        ("GET", "/api/v1/releases/{r}", &everyone),
        ("POST", "/api/v1/releases/{r}/abandon", &[admin, releaser]),
        (
            "POST",
            "/api/v1/releases/{r}/stages/qa/deploy",
            &[admin, releaser],
        ),
        (
            "POST",
            "/api/v1/releases/{r}/stages/qa/cancel",
            &[admin, releaser],
        ),
        (
            "POST",
            "/api/v1/releases/{r}/stages/qa/break-glass",
            &[admin],
        ),
        ("GET", "/api/v1/releases/{r}/logs", &everyone),
        (
            "GET",
            "/api/v1/releases/{r}/stages/qa/attempts/1/tasks/1-kit/log",
            &everyone,
        ),
        ("GET", "/api/v1/approvals", &everyone),
        ("GET", "/api/v1/approvals/{r}.qa.1.pre", &everyone),
        // The admin is not listed on the approval: without `override` it may not decide.
        (
            "POST",
            "/api/v1/approvals/{r}.qa.1.pre/approve",
            &[approver],
        ),
        ("POST", "/api/v1/approvals/{r}.qa.1.pre/reject", &[approver]),
        (
            "POST",
            "/api/v1/approvals/{r}.qa.1.pre/reassign",
            &[approver],
        ),
        ("GET", "/api/v1/audit", &everyone),
    ];
    let anonymous = Client::new(&server.base, None).unwrap();
    for (method, path, allowed) in cases {
        for who in everyone.iter().copied().map(Some).chain([None]) {
            let release = server.release();
            let path = path.replace("{r}", &release);
            let body = match (*method, path.ends_with("reassign")) {
                ("PUT", _) => Some(PIPELINE.replace("TIMEOUT", "1h").into_bytes()),
                ("POST", _) if path.ends_with("validate") => {
                    Some(PIPELINE.replace("TIMEOUT", "1h").into_bytes())
                }
                ("POST", true) => Some(json!({"to": "carl"}).to_string().into_bytes()),
                ("POST", false) if path.ends_with("break-glass") => {
                    Some(json!({"justification": "hotfix"}).to_string().into_bytes())
                }
                ("POST", false) => Some(b"{}".to_vec()),
                _ => None,
            };
            let client = who.map_or_else(|| anonymous.clone(), |w| server.client(w));
            let reply = server
                .runtime
                .block_on(client.send(method, &path, body, &[]))
                .unwrap();
            let expected = match who {
                None => "401",
                Some(w) if allowed.contains(&w) => "allowed",
                Some(_) => "403",
            };
            let got = match reply.status {
                401 => "401",
                403 => "403",
                _ => "allowed",
            };
            assert_eq!(
                got,
                expected,
                "{method} {path} as {}: {} {}",
                who.unwrap_or("anonymous"),
                reply.status,
                reply.text()
            );
            assert!(reply.status < 500, "{method} {path}: {}", reply.text());
        }
    }
}

/// Starts `sluice serve` as a child process on `dir` (config and data there); returns it and
/// its address, once it listens, and its stderr lines.
fn serve_process(
    dir: &std::path::Path,
    fault_after_commit: Option<u32>,
) -> (Spawned, String, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead as _;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["serve", "--config"])
        .arg(dir.join("sluice.toml"))
        .env("SLUICE_RITA", token("rita"))
        .env("SLUICE_BOB", token("bob"))
        .env("SLUICE_VIC", token("vic"))
        .env_remove("SLUICE_FAULT_PAUSE_AFTER_COMMIT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(n) = fault_after_commit {
        command.env("SLUICE_FAULT_PAUSE_AFTER_COMMIT", n.to_string());
    }
    let mut child = Spawned(command.spawn().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let address = wait_line(&lines, "serving on ")
        .split("serving on ")
        .nth(1)
        .unwrap()
        .to_owned();
    (child, address, lines)
}

/// Waits (bounded) for a line containing `needle`.
fn wait_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no `{needle}` from the server: {e}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// A directory for `sluice serve` as a process: sluice.toml (rita releaser, bob approver in
/// group approvers, vic viewer; tokens from the environment), the `shop` and `logs` pipelines.
fn service_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::copy(TESTKIT, pipelines.join("kit.wasm")).unwrap();
    std::fs::write(
        pipelines.join("shop.toml"),
        PIPELINE.replace("TIMEOUT", "1h"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        r#"
listen = "127.0.0.1:0"
data-dir = "data"
pipelines = "pipelines"
[[users]]
name = "rita"
token-env = "SLUICE_RITA"
roles = ["releaser"]
[[users]]
name = "bob"
token-env = "SLUICE_BOB"
roles = ["approver"]
groups = ["approvers"]
[[users]]
name = "vic"
token-env = "SLUICE_VIC"
roles = ["viewer"]
"#,
    )
    .unwrap();
    dir
}

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
    let (mut child, address, lines) = serve_process(dir.path(), None);
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

#[test]
fn an_approval_committed_just_before_a_sigkill_is_there_after_restart_and_a_retry_replays_it() {
    let dir = service_dir();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Commit 1 creates the release; commit 2 is bob's approval. The server stops dead right
    // after it, before answering, and is SIGKILLed there.
    let (mut child, address, lines) = serve_process(dir.path(), Some(2));
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
    let (mut child, address, _lines) = serve_process(dir.path(), None);
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

#[test]
fn an_approval_may_defer_the_deployment_to_an_rfc3339_time() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.release();
    let qa = format!("{release}.qa.1.pre");
    let bad = server.call(
        "bob",
        "POST",
        &format!("/api/v1/approvals/{qa}/approve"),
        Some(json!({"defer-until": "tomorrow morning"})),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("RFC 3339"), "{}", bad.text());
    // An hour from now, written with a +02:00 offset.
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let written = at
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(2)))
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let reply = server.call(
        "bob",
        "POST",
        &format!("/api/v1/approvals/{qa}/approve"),
        Some(json!({"defer-until": written})),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let stage = &reply.json()["stages"][0];
    assert_eq!(stage["state"], "scheduled", "{stage}");
    let deferred = stage["attempts"][0]["deferred_until"].as_i64().unwrap();
    assert_eq!(deferred / 1000, at.as_second(), "{written}");
}

/// Three stages: `seq` (alice then bob, in that order), `quorum` (2 of alice, bob, carl), and
/// `carry` (the same 2-of-3, skipped when its approvers approved the stage before).
const RULES_PIPELINE: &str = r#"
version = 1
name = "rules"

[[stages]]
name = "seq"
pre-approval = { approvers = ["alice", "bob"], policy = "sequence" }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }

[[stages]]
name = "quorum"
after = ["seq"]
pre-approval = { approvers = ["alice", "bob", "carl"], policy = "n-of-m", required = 2 }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }

[[stages]]
name = "carry"
after = ["quorum"]
pre-approval = { approvers = ["alice", "bob", "carl"], policy = "n-of-m", required = 2, skip-if-approved-in-previous-stage = true }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

#[test]
fn sequence_n_of_m_and_skip_if_approved_are_enforced_by_the_server() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.put_and_release("rules", RULES_PIPELINE);
    let id = |stage: &str| format!("{release}.{stage}.1.pre");

    // Sequence: bob may not go before alice; the answer says who is next.
    let early = approve(&server, "bob", &id("seq"));
    assert_eq!(early.status, 409, "{}", early.text());
    assert!(early.text().contains("next is alice"), "{}", early.text());
    assert_eq!(approve(&server, "alice", &id("seq")).status, 200);
    assert_eq!(approve(&server, "bob", &id("seq")).status, 200);

    // Two of three: one approval leaves it pending, the second lets the stage go.
    server.wait_stage(&release, "quorum", "awaiting-approval");
    assert_eq!(approve(&server, "alice", &id("quorum")).status, 200);
    assert_eq!(
        server.get("vic", &format!("/api/v1/approvals/{}", id("quorum")))["state"],
        "pending"
    );
    assert_eq!(approve(&server, "carl", &id("quorum")).status, 200);

    // The same approvers approved the stage before: `carry` needs nobody.
    let done = server.wait_stage(&release, "carry", "succeeded");
    assert_eq!(done["state"], "succeeded");
    let carry = server.get("vic", &format!("/api/v1/approvals/{}", id("carry")));
    assert_eq!(carry["state"], "approved", "{carry}");
}

#[test]
fn a_pending_approval_is_void_once_a_plugin_of_its_stage_changed() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.release();
    // Someone replaces the component the release recorded (same path, other bytes).
    std::fs::copy(
        crate::support::TEMPLATE,
        server._dir.path().join("pipelines/kit.wasm"),
    )
    .unwrap();
    let reply = approve(&server, "bob", &format!("{release}.qa.1.pre"));
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(reply.text().contains("void"), "{}", reply.text());
    let r = server.wait_stage(&release, "qa", "failed");
    assert_eq!(r["state"], "failed");
    assert_eq!(r["stages"][1]["state"], "not-started");
}

/// A `sluice serve` process on `dir` that a test can SIGKILL and start again.
struct Process {
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    child: Spawned,
    address: String,
}

impl Process {
    fn start(dir: tempfile::TempDir) -> Self {
        let (child, address, _lines) = serve_process(dir.path(), None);
        Self {
            dir,
            runtime: tokio::runtime::Runtime::new().unwrap(),
            child,
            address,
        }
    }

    fn kill_and_restart(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        let (child, address, _lines) = serve_process(self.dir.path(), None);
        (self.child, self.address) = (child, address);
    }

    fn call(&self, who: &str, method: &str, path: &str) -> Reply {
        let client = Client::new(&self.address, Some(token(who))).unwrap();
        let body = (method == "POST").then(|| b"{}".to_vec());
        self.runtime
            .block_on(client.send(method, path, body, &[]))
            .unwrap()
    }

    fn pending(&self) -> Vec<String> {
        let list = self.call("vic", "GET", "/api/v1/approvals").json();
        let mut ids: Vec<String> = list["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// Waits (bounded, woken by the audit stream) until exactly `want` are pending.
    fn wait_pending(&self, want: &[String]) {
        let mut want = want.to_vec();
        want.sort();
        self.wait(&format!("pending = {want:?}"), |p| p.pending() == want);
    }

    /// Waits (bounded, woken by the audit stream) until `ready` holds.
    fn wait(&self, what: &str, ready: impl Fn(&Self) -> bool) {
        let vic = Client::new(&self.address, Some(token("vic"))).unwrap();
        let mut audit = self
            .runtime
            .block_on(vic.events("/api/v1/audit?follow=true&limit=0"))
            .map_err(|e| format!("{e:?}"))
            .unwrap();
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

    fn approve(&self, id: &str) {
        let reply = self.call("bob", "POST", &format!("/api/v1/approvals/{id}/approve"));
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
    }

    fn release(&self, name: &str) -> Value {
        self.call("vic", "GET", &format!("/api/v1/releases/{name}"))
            .json()
    }

    /// Releases in the order their QA deployment ran.
    fn deployed(&self) -> Vec<String> {
        let audit = self.call("vic", "GET", "/api/v1/audit?limit=10000").json();
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                let what = e["what"].as_str().unwrap();
                what.contains("qa: task") && what.contains("succeeded")
            })
            .map(|e| e["release"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A service directory with pipeline `web`: a QA stage with pre- and post-approvers, under
/// `queue`.
fn web_dir(queue: &str) -> tempfile::TempDir {
    let dir = service_dir();
    std::fs::write(
        dir.path().join("pipelines/web.toml"),
        format!(
            r#"
version = 1
name = "web"
[[stages]]
name = "qa"
queue = {queue}
pre-approval = {{ approvers = ["bob"] }}
post-approval = {{ approvers = ["bob"] }}
[[stages.tasks]]
plugin = "./kit.wasm"
config = {{ action = "noop" }}
"#
        ),
    )
    .unwrap();
    dir
}

/// R1..R5 on `web_dir(queue)`, in a server process.
fn r1_to_r5(queue: &str) -> (Process, Vec<String>) {
    let process = Process::start(web_dir(queue));
    let releases = (0..5)
        .map(|_| {
            let reply = process.call("rita", "POST", "/api/v1/pipelines/web/releases");
            assert_eq!(reply.status, 201, "{}", reply.text());
            reply.json()["name"].as_str().unwrap().to_owned()
        })
        .collect();
    (process, releases)
}

fn qa_pre(release: &str) -> String {
    format!("{release}.qa.1.pre")
}

fn qa_post(release: &str) -> String {
    format!("{release}.qa.1.post")
}

#[test]
fn what_the_audit_trail_says_is_already_in_the_pending_list() {
    // Commit 1 creates the release, queued on QA; commit 2 is its turn, which asks for the
    // pre-approval. The process stops dead right after commit 2 is durable, before the engine
    // hears of it: a client that reads the entry and then the pending list must find the
    // approval there.
    let dir = web_dir(r#"{ policy = "sequential" }"#);
    let (mut child, address, lines) = serve_process(dir.path(), Some(2));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let call = |who: &str, path: &str| {
        let client = Client::new(&address, Some(token(who))).unwrap();
        let body = path.ends_with("/releases").then(|| b"{}".to_vec());
        let method = if body.is_some() { "POST" } else { "GET" };
        runtime
            .block_on(client.send(method, path, body, &[]))
            .unwrap()
    };
    let created = call("rita", "/api/v1/pipelines/web/releases");
    assert_eq!(created.status, 201, "{}", created.text());
    wait_line(&lines, "sluice-fault: paused after commit 2");
    let audit = call("vic", "/api/v1/audit?limit=1").json();
    let last = &audit["entries"][0];
    assert_eq!(last["release"], "web-1", "{audit}");
    assert!(
        last["what"]
            .as_str()
            .unwrap()
            .contains("its turn in the queue"),
        "{audit}"
    );
    let pending = call("vic", "/api/v1/approvals").json();
    assert_eq!(pending["approvals"][0]["id"], "web-1.qa.1.pre", "{pending}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sequential_r1_to_r5_survives_a_sigkill_between_turns() {
    let (mut p, r) = r1_to_r5(r#"{ policy = "sequential" }"#);
    for (i, release) in r.iter().enumerate() {
        p.wait_pending(std::slice::from_ref(&qa_pre(release)));
        p.approve(&qa_pre(release));
        p.wait_pending(std::slice::from_ref(&qa_post(release)));
        p.approve(&qa_post(release));
        if i == 0 {
            // Killed as R1 ends: R2's turn may or may not have been committed.
            p.kill_and_restart();
        }
    }
    p.wait_pending(&[]);
    assert_eq!(
        p.deployed(),
        r,
        "one at a time, R1 to R5, across the restart"
    );
}

#[test]
fn latest_only_r1_to_r5_survives_a_sigkill_between_turns() {
    let (mut p, r) = r1_to_r5(r#"{ policy = "latest-only" }"#);
    p.wait_pending(std::slice::from_ref(&qa_pre(&r[0])));
    p.approve(&qa_pre(&r[0]));
    p.wait_pending(std::slice::from_ref(&qa_post(&r[0])));
    p.approve(&qa_post(&r[0]));
    p.kill_and_restart();
    p.wait_pending(std::slice::from_ref(&qa_pre(&r[4])));
    // R2..R4 are skipped in the same decision that gave R5 its turn (each in its own commit).
    p.wait("R2..R4 skipped", |p| {
        r[1..4]
            .iter()
            .all(|s| p.release(s)["stages"][0]["state"] == "skipped")
    });
    for skipped in &r[1..4] {
        let release = p.release(skipped);
        assert_eq!(release["stages"][0]["state"], "skipped", "{release}");
        assert_eq!(release["approvals"], json!([]), "never asked");
    }
    p.approve(&qa_pre(&r[4]));
    p.wait_pending(std::slice::from_ref(&qa_post(&r[4])));
    p.approve(&qa_post(&r[4]));
    p.wait_pending(&[]);
    assert_eq!(p.deployed(), [r[0].clone(), r[4].clone()]);
}

#[test]
fn parallel_r1_to_r5_survives_a_sigkill_mid_way() {
    let (mut p, r) = r1_to_r5(r#"{ policy = "parallel" }"#);
    let pres: Vec<String> = r.iter().map(|r| qa_pre(r)).collect();
    p.wait_pending(&pres);
    // Killed with five approvals pending (and no task running, which would fail as
    // interrupted): after the restart all five are still asked for.
    p.kill_and_restart();
    p.wait_pending(&pres);
    for id in &pres {
        p.approve(id);
    }
    let posts: Vec<String> = r.iter().map(|r| qa_post(r)).collect();
    p.wait_pending(&posts);
    for id in &posts {
        p.approve(id);
    }
    p.wait_pending(&[]);
    let mut deployed = p.deployed();
    deployed.sort();
    assert_eq!(deployed, r);
}

#[test]
fn an_operator_schedules_a_stage_and_its_approval_is_asked_at_that_time() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.release();
    let deploy = |at: Value| {
        server.call(
            "rita",
            "POST",
            &format!("/api/v1/releases/{release}/stages/prod/deploy"),
            Some(json!({ "at": at })),
        )
    };
    let bad = deploy(json!("next tuesday"));
    assert_eq!(bad.status, 400, "{}", bad.text());
    // An hour ahead: scheduled, nothing asked yet.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let reply = deploy(json!(later.to_string()));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let prod = &reply.json()["stages"][1];
    assert_eq!(prod["state"], "scheduled", "{prod}");
    assert_eq!(
        prod["attempts"][0]["deferred_until"].as_i64().unwrap() / 1000,
        later.as_second()
    );
    assert_eq!(prod["attempts"][0]["approvals"], json!([]));
    // Canceled, then scheduled a moment ahead: at that time the pre-approval is asked.
    let cancel = server.call(
        "rita",
        "POST",
        &format!("/api/v1/releases/{release}/stages/prod/cancel"),
        Some(json!({})),
    );
    assert_eq!(cancel.status, 200, "{}", cancel.text());
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(300);
    assert_eq!(deploy(json!(soon.to_string())).status, 200);
    server.wait_stage(&release, "prod", "awaiting-approval");
    let approval = server.get("vic", &format!("/api/v1/approvals/{release}.prod.2.pre"));
    assert_eq!(approval["state"], "pending");
    assert!(approval["requested_at"].as_i64().unwrap() >= soon.as_millisecond());
}

/// A build folder for `dir-source`, on `branch`.
fn build(builds: &std::path::Path, version: &str, branch: &str) {
    let dir = builds.join(version);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), version).unwrap();
    std::fs::write(
        dir.join(".artifact.json"),
        json!({ "branch": branch }).to_string(),
    )
    .unwrap();
}

#[test]
fn continuous_deployment_releases_each_new_version_once_across_a_sigkill() {
    let dir = service_dir();
    let builds = dir.path().join("builds");
    build(&builds, "1.0", "main");
    build(&builds, "1.1", "main");
    build(&builds, "1.5", "feature");
    std::fs::write(
        dir.path().join("pipelines/site.toml"),
        format!(
            r#"
version = 1
name = "site"
[artifacts.build]
source = "dir-source"
config = {{ path = "/builds" }}
grants.dirs = [{{ host = "{}", guest = "/builds" }}]
[triggers.continuous]
artifact = "build"
interval = "100ms"
branch = "main"
[[stages]]
name = "dev"
[[stages.tasks]]
plugin = "./kit.wasm"
config = {{ action = "noop" }}
"#,
            builds.display()
        ),
    )
    .unwrap();
    let released = |p: &Process| -> Vec<String> {
        let list = p
            .call("vic", "GET", "/api/v1/releases?pipeline=site")
            .json();
        let mut releases: Vec<(u64, String)> = list["releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let description = r["description"].as_str().unwrap_or_default();
                (r["number"].as_u64().unwrap(), description.to_owned())
            })
            .collect();
        releases.sort();
        releases.into_iter().map(|(_, d)| d).collect()
    };
    let of = |versions: &[&str]| -> Vec<String> {
        versions
            .iter()
            .map(|v| format!("continuous deployment: build {v}"))
            .collect()
    };

    // Set up with 1.0 and 1.1 on main: the newest is released, history is not replayed.
    let mut p = Process::start(dir);
    p.wait("1.1 released", |p| released(p) == of(&["1.1"]));
    // New builds: each on main gets one release, oldest first; the feature branch none.
    build(&builds, "1.2", "main");
    build(&builds, "1.3", "main");
    build(&builds, "1.4", "feature");
    p.wait("1.2 and 1.3 released", |p| {
        released(p) == of(&["1.1", "1.2", "1.3"])
    });
    // Killed and restarted: the versions it released stay released once.
    p.kill_and_restart();
    build(&builds, "1.6", "main");
    p.wait("1.6 released", |p| released(p).len() >= 4);
    assert_eq!(released(&p), of(&["1.1", "1.2", "1.3", "1.6"]));
}

#[test]
fn a_deployment_in_a_freeze_waits_until_an_admin_breaks_glass_with_a_justification() {
    let server = Server::start("1h", ApiLimits::default());
    let pipeline = r#"
version = 1
name = "frozen"
[[freezes]]
reason = "code freeze"
from = "2000-01-01T00:00:00Z"
until = "2100-01-01T00:00:00Z"
[[stages]]
name = "prod"
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;
    let release = server.put_and_release("frozen", pipeline);
    let waiting = server.wait_stage(&release, "prod", "scheduled");
    let attempt = &waiting["stages"][0]["attempts"][0];
    assert_eq!(attempt["frozen"], "code freeze", "{waiting}");

    let path = format!("/api/v1/releases/{release}/stages/prod/break-glass");
    let why = json!({"justification": "payment outage: the fix cannot wait"});
    let as_releaser = server.call("rita", "POST", &path, Some(why.clone()));
    assert_eq!(as_releaser.status, 403, "{}", as_releaser.text());
    let unjustified = server.call("ada", "POST", &path, Some(json!({"justification": " "})));
    assert_eq!(unjustified.status, 400, "{}", unjustified.text());
    assert!(unjustified.text().contains("justification"));
    let broken = server.call("ada", "POST", &path, Some(why));
    assert_eq!(broken.status, 200, "{}", broken.text());

    let done = server.wait_stage(&release, "prod", "succeeded");
    let glass = &done["stages"][0]["attempts"][0]["break_glass"];
    assert_eq!(glass["by"], "ada", "{done}");
    assert_eq!(
        glass["justification"],
        "payment outage: the fix cannot wait"
    );
    let audit = server.get("vic", &format!("/api/v1/audit?release={release}"));
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["actor"] == "ada"
            && e["what"]
                .as_str()
                .unwrap()
                .starts_with("prod: freeze broken by ada (break-glass): payment outage")),
        "{audit}"
    );
}
