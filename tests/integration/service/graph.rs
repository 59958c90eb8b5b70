//! A hand deploy respects the graph: a stage whose `after` stages have not succeeded (ring 1
//! still waiting for its post-deployment approval) is refused with 409 naming what it waits
//! for, and nothing is stored; an admin deploys out of order only with a justification, kept
//! on the deployment and in the audit trail. An admin's approval override needs one too.

use serde_json::{Value, json};
use sluice::service::config::ApiLimits;

use crate::support::Server;

/// Ring 1, whose post-deployment approval (alice) is the gate before ring 2.
const RINGS: &str = r#"
version = 1
name = "rings"
[[stages]]
name = "prod-ring-1"
post-approval = { approvers = ["alice"] }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
[[stages]]
name = "prod-ring-2"
after = ["prod-ring-1"]
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

const WAITS: &str = "prod-ring-1 (awaiting its post-deployment approval)";

/// A rings release with ring 1 deployed and waiting for alice's post-deployment approval.
fn ring_1_awaiting_post(server: &Server) -> String {
    let release = server.put_and_release("rings", RINGS);
    server.wait_stage(&release, "prod-ring-1", "awaiting-approval");
    release
}

/// The release's audit entries, as text.
fn audit(server: &Server, release: &str) -> Vec<String> {
    let audit = server.get("vic", &format!("/api/v1/audit?release={release}"));
    let entries = audit["entries"].as_array().unwrap();
    entries
        .iter()
        .map(|e| e["what"].as_str().unwrap().to_owned())
        .collect()
}

fn deploy_ring_2(server: &Server, who: &str, release: &str, body: Value) -> (u16, String) {
    let path = format!("/api/v1/releases/{release}/stages/prod-ring-2/deploy");
    let reply = server.call(who, "POST", &path, Some(body));
    (reply.status, reply.text())
}

#[test]
fn a_hand_deploy_of_ring_2_while_ring_1_awaits_its_post_approval_is_refused_and_nothing_is_stored()
{
    let server = Server::start("1h", ApiLimits::default());
    let release = ring_1_awaiting_post(&server);
    let before = server.get("vic", &format!("/api/v1/releases/{release}"));
    let trail = audit(&server, &release);
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_millis(50)).to_string();
    for attack in [json!({}), json!({ "at": soon })] {
        let (status, text) = deploy_ring_2(&server, "rita", &release, attack);
        assert_eq!(status, 409, "{text}");
        assert!(text.contains(WAITS), "names what it waits for: {text}");
        assert!(text.contains("out of order"), "and the way out: {text}");
    }
    let after = server.get("vic", &format!("/api/v1/releases/{release}"));
    assert_eq!(after, before, "the release is as it was");
    assert_eq!(after["stages"][1]["state"], "not-started");
    assert_eq!(audit(&server, &release), trail, "nothing audited");
    // Ring 1's approval is the gate: given, ring 2 goes by itself.
    let post = format!("{release}.prod-ring-1.1.post");
    assert_eq!(server.approve_as("alice", &post).status, 200);
    server.wait_stage(&release, "prod-ring-2", "succeeded");
}

#[test]
fn an_admin_deploys_out_of_order_only_with_a_justification_and_it_is_audited() {
    let server = Server::start("1h", ApiLimits::default());
    let release = ring_1_awaiting_post(&server);
    let before = server.get("vic", &format!("/api/v1/releases/{release}"));
    let trail = audit(&server, &release);
    let why = "ring 1's approver is out; the fix is urgent";
    let refused = [
        (
            "rita",
            json!({"out-of-order": true, "justification": why}),
            403,
        ),
        ("ada", json!({"out-of-order": true}), 422),
        (
            "ada",
            json!({"out-of-order": true, "justification": " \t"}),
            400,
        ),
        (
            "ada",
            json!({"out-of-order": true, "justification": "x".repeat(2001)}),
            400,
        ),
        ("ada", json!({"justification": why}), 422),
    ];
    for (who, body, status) in refused {
        let (got, text) = deploy_ring_2(&server, who, &release, body.clone());
        assert_eq!(got, status, "{who} {body}: {text}");
        let says = if status == 403 {
            "admin"
        } else {
            "justification"
        };
        assert!(text.contains(says), "{who} {body}: {text}");
    }
    let after = server.get("vic", &format!("/api/v1/releases/{release}"));
    assert_eq!(after, before, "nothing deployed");
    assert_eq!(audit(&server, &release), trail, "nothing audited");

    let body = json!({"out-of-order": true, "justification": why});
    let (status, text) = deploy_ring_2(&server, "ada", &release, body);
    assert_eq!(status, 200, "{text}");
    let done = server.wait_stage(&release, "prod-ring-2", "succeeded");
    let record = &done["stages"][1]["attempts"][0]["out_of_order"];
    assert_eq!(record["by"], "ada", "{done}");
    assert_eq!(record["justification"], why);
    assert_eq!(record["waited_for"], json!([WAITS]));
    let expected =
        format!("prod-ring-2: deploy requested out of order by ada, ahead of {WAITS}: {why}");
    let trail = audit(&server, &release);
    assert!(trail.iter().any(|e| e.starts_with(&expected)), "{trail:?}");
    // Ring 1 still waits for alice: the override moved nothing else.
    assert_eq!(done["stages"][0]["state"], "awaiting-approval");
}

#[test]
fn an_admin_override_of_an_approval_or_its_reassignment_needs_a_justification() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.release();
    let qa = format!("{release}.qa.1.pre");
    let approval = || server.get("vic", &format!("/api/v1/approvals/{qa}"));
    let before = approval();
    let trail = audit(&server, &release);
    let approve = format!("/api/v1/approvals/{qa}/approve");
    let reassign = format!("/api/v1/approvals/{qa}/reassign");
    let refused = [
        (
            "bob",
            &approve,
            json!({"override": true, "justification": "x"}),
            403,
        ),
        (
            "ada",
            &approve,
            json!({"override": true, "comment": "hotfix"}),
            422,
        ),
        (
            "ada",
            &approve,
            json!({"override": true, "justification": ""}),
            400,
        ),
        (
            "ada",
            &approve,
            json!({"justification": "no override"}),
            422,
        ),
        (
            "ada",
            &reassign,
            json!({"to": "mallory", "override": true}),
            422,
        ),
        (
            "ada",
            &reassign,
            json!({"to": "mallory", "override": true, "justification": " "}),
            400,
        ),
    ];
    for (who, path, body, status) in refused {
        let reply = server.call(who, "POST", path, Some(body.clone()));
        assert_eq!(
            reply.status,
            status,
            "{who} {path} {body}: {}",
            reply.text()
        );
    }
    assert_eq!(approval(), before, "no decision, no reassignment");
    assert_eq!(audit(&server, &release), trail, "nothing audited");

    let body = json!({"override": true, "comment": "hotfix", "justification": "the approvers are at the offsite"});
    let reply = server.call("ada", "POST", &approve, Some(body));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let decided = approval();
    assert_eq!(decided["state"], "approved");
    assert_eq!(
        decided["decisions"][0]["note"],
        "override by ada, for every approver: the approvers are at the offsite"
    );
    let trail = audit(&server, &release);
    assert!(
        trail.iter().any(|e| e.contains(
            "approved by ada (override by ada, for every approver: the approvers are at the offsite): hotfix"
        )),
        "{trail:?}"
    );
}
