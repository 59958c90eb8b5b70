//! The approval rules, enforced by a server: who sees and decides what, `all`, `sequence` and
//! n-of-m policies, racing decisions, expiry, approvals voided by a changed plugin, and who may
//! reassign an approval to whom (the four-eyes rule is not handed away).

use serde_json::json;
use sluice::api::client::{Client, Reply};
use sluice::service::config::ApiLimits;

use crate::support::{Server, TEMPLATE, token};

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

    let reply = server.approve_as("bob", &qa);
    assert_eq!(reply.status, 200, "{}", reply.text());
    server.wait_stage(&release, "prod", "awaiting-approval");
    let prod = format!("{release}.prod.1.pre");
    assert_eq!(server.approve_as("alice", &prod).status, 200);
    // One of two under `all`: still pending.
    assert_eq!(
        server.get("vic", &format!("/api/v1/approvals/{prod}"))["state"],
        "pending"
    );
    assert_eq!(server.approve_as("bob", &prod).status, 200);
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
    let early = server.approve_as("bob", &id("seq"));
    assert_eq!(early.status, 409, "{}", early.text());
    assert!(early.text().contains("next is alice"), "{}", early.text());
    assert_eq!(server.approve_as("alice", &id("seq")).status, 200);
    assert_eq!(server.approve_as("bob", &id("seq")).status, 200);

    // Two of three: one approval leaves it pending, the second lets the stage go.
    server.wait_stage(&release, "quorum", "awaiting-approval");
    assert_eq!(server.approve_as("alice", &id("quorum")).status, 200);
    assert_eq!(
        server.get("vic", &format!("/api/v1/approvals/{}", id("quorum")))["state"],
        "pending"
    );
    assert_eq!(server.approve_as("carl", &id("quorum")).status, 200);

    // The same approvers approved the stage before: `carry` needs nobody.
    let done = server.wait_stage(&release, "carry", "succeeded");
    assert_eq!(done["state"], "succeeded");
    let carry = server.get("vic", &format!("/api/v1/approvals/{}", id("carry")));
    assert_eq!(carry["state"], "approved", "{carry}");
}

#[test]
fn a_pending_approval_stays_good_when_the_plugin_file_changes_the_release_runs_its_kept_bytes() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.release();
    // Someone replaces the component the release recorded (same path, other bytes): the
    // approver still approves what will run, the bytes the release keeps in the plugin store.
    std::fs::copy(TEMPLATE, server.dir.path().join("pipelines/kit.wasm")).unwrap();
    let reply = server.approve_as("bob", &format!("{release}.qa.1.pre"));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let r = server.wait_stage(&release, "qa", "succeeded");
    let task = &r["stages"][0]["attempts"][0]["tasks"][0];
    assert_eq!(task["state"], "succeeded", "the testkit's noop ran: {r}");
}

/// Whether the release's audit trail records a reassignment.
fn audits_a_reassign(server: &Server, release: &str) -> bool {
    let audit = server.get("vic", &format!("/api/v1/audit?release={release}"));
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["what"].as_str().unwrap().contains("reassigned"))
}

fn reassign_as(server: &Server, who: &str, id: &str, body: serde_json::Value) -> Reply {
    server.call(
        who,
        "POST",
        &format!("/api/v1/approvals/{id}/reassign"),
        Some(body),
    )
}

#[test]
fn the_creator_cannot_hand_their_approval_to_someone_they_choose() {
    let server = Server::start("1h", ApiLimits::default());
    // alice (approver and releaser) creates a release whose qa approval lists her.
    let created = server.call(
        "alice",
        "POST",
        "/api/v1/pipelines/shop/releases",
        Some(json!({})),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let release = created.json()["name"].as_str().unwrap().to_owned();
    let qa = format!("{release}.qa.1.pre");
    let before = server.get("vic", &format!("/api/v1/approvals/{qa}"));
    assert_eq!(before["approvers"], json!(["alice", "group:approvers"]));
    assert_eq!(server.approve_as("alice", &qa).status, 403);

    // She may not choose her approver instead: refused, and nothing changed.
    let reply = reassign_as(&server, "alice", &qa, json!({"to": "mallory"}));
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(
        reply.text().contains("created this release"),
        "{}",
        reply.text()
    );
    let after = server.get("vic", &format!("/api/v1/approvals/{qa}"));
    assert_eq!(after, before, "a refused reassign changed the approval");
    assert_eq!(after["state"], "pending");
    assert_eq!(after["release_creator"], "alice");
    assert!(!audits_a_reassign(&server, &release));

    // mallory, an approver in no group the stage lists, may not approve it.
    let reply = server.approve_as("mallory", &qa);
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("not an approver"), "{}", reply.text());
    assert_eq!(
        server.get("vic", &format!("/api/v1/approvals/{qa}")),
        before
    );
}

#[test]
fn reassign_goes_only_to_someone_the_stage_lists_unless_an_admin_overrides() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.release();
    let qa = format!("{release}.qa.1.pre");
    let before = server.get("vic", &format!("/api/v1/approvals/{qa}"));

    // bob (through group approvers) may not hand it to mallory, listed nowhere, nor to a name
    // nobody has (it would strand the approval): 422, naming who may be chosen (carl, in
    // group approvers; alice and the group are approvers of it already, bob is bob).
    for to in ["mallory", "nobody-at-all", "vic"] {
        let reply = reassign_as(&server, "bob", &qa, json!({ "to": to }));
        assert_eq!(reply.status, 422, "{to}: {}", reply.text());
        let text = reply.text();
        assert!(
            text.contains(&format!("{to} may not be handed this approval")),
            "{text}"
        );
        assert!(text.contains("choose one of: carl\""), "{text}");
    }
    assert_eq!(
        server.get("vic", &format!("/api/v1/approvals/{qa}")),
        before
    );
    assert!(!audits_a_reassign(&server, &release));

    // carl is in group approvers: the service tells the core so, and carl may be chosen.
    let reply = reassign_as(
        &server,
        "bob",
        &qa,
        json!({"to": "carl", "comment": "away"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let now = server.get("vic", &format!("/api/v1/approvals/{qa}"));
    assert_eq!(now["approvers"], json!(["alice", "carl"]));
    assert_eq!(server.approve_as("mallory", &qa).status, 403);

    // An admin's override hands it to anyone who may approve, mallory included; not to a
    // stranger or a viewer, who could never decide it.
    for to in ["nobody-at-all", "vic"] {
        let body = json!({"to": to, "override": true, "justification": "bob is out"});
        let reply = reassign_as(&server, "ada", &qa, body);
        assert_eq!(reply.status, 422, "{to}: {}", reply.text());
        assert!(
            reply.text().contains("not a known user who may approve"),
            "{}",
            reply.text()
        );
    }
    assert_eq!(
        server.get("vic", &format!("/api/v1/approvals/{qa}"))["approvers"],
        json!(["alice", "carl"])
    );
    let reply = reassign_as(
        &server,
        "ada",
        &qa,
        json!({"to": "mallory", "override": true, "comment": "cover", "justification": "bob is out"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(server.approve_as("mallory", &qa).status, 200);
    server.wait_stage(&release, "qa", "succeeded");
}
