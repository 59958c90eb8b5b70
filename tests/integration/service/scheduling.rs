//! When a deployment may happen: an approval that defers it, an operator who schedules it,
//! and a freeze only an admin's justified break-glass gets through — a rollback's too.

use serde_json::{Value, json};
use sluice::service::config::ApiLimits;

use crate::support::{Server, TestServer};

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

#[test]
fn an_operator_schedules_a_stage_and_its_approval_is_asked_at_that_time() {
    let server = Server::start("1h", ApiLimits::default());
    let release = server.release();
    // prod comes after qa: once qa is through, prod starts by itself; canceled, it is the
    // operator's to schedule.
    assert_eq!(
        server
            .approve_as("bob", &format!("{release}.qa.1.pre"))
            .status,
        200
    );
    server.wait_stage(&release, "prod", "awaiting-approval");
    let cancel = || {
        let path = format!("/api/v1/releases/{release}/stages/prod/cancel");
        let reply = server.call("rita", "POST", &path, Some(json!({})));
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    cancel();
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
        prod["attempts"][1]["deferred_until"].as_i64().unwrap() / 1000,
        later.as_second()
    );
    assert_eq!(prod["attempts"][1]["approvals"], json!([]));
    // Canceled, then scheduled a moment ahead: at that time the pre-approval is asked.
    cancel();
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(300);
    assert_eq!(deploy(json!(soon.to_string())).status, 200);
    server.wait_stage(&release, "prod", "awaiting-approval");
    let approval = server.get("vic", &format!("/api/v1/approvals/{release}.prod.3.pre"));
    assert_eq!(approval["state"], "pending");
    assert!(approval["requested_at"].as_i64().unwrap() >= soon.as_millisecond());
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

#[test]
fn a_rollback_in_a_freeze_waits_it_out_until_an_admin_breaks_glass_for_it() {
    let health = TestServer::start("ok");
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
[stages.post-gates]
interval = "100ms"
timeout = "1s"
rollback = true
[[stages.post-gates.gates]]
name = "health"
plugin = "http-check"
config = { url = "URL", expect_status = 200 }
grants.hosts = ["HOST"]
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#
    .replace("URL", &health.url("/health"))
    .replace("HOST", &health.addr.to_string());
    let glass = |release: &str| {
        let path = format!("/api/v1/releases/{release}/stages/prod/break-glass");
        let why = json!({"justification": format!("{release} cannot wait")});
        let reply = server.call("ada", "POST", &path, Some(why));
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    // The good release and the bad one each go through the freeze by break-glass.
    let good = server.put_and_release("frozen", &pipeline);
    server.wait_stage(&good, "prod", "scheduled");
    glass(&good);
    server.wait_stage(&good, "prod", "succeeded");
    health.set_status(503);
    let path = "/api/v1/pipelines/frozen/releases";
    let bad = server.call("rita", "POST", path, Some(json!({})));
    let bad = bad.json()["name"].as_str().unwrap().to_owned();
    server.wait_stage(&bad, "prod", "scheduled");
    glass(&bad);
    server.wait_stage(&bad, "prod", "failed");

    // The rollback to the good release is held by the freeze like any deployment: nothing ran.
    let held = server.wait_stage(&good, "prod", "scheduled");
    let rollback = &held["stages"][0]["attempts"][1];
    assert_eq!(rollback["rollback_of"], bad.as_str(), "{held}");
    assert_eq!(rollback["frozen"], "code freeze", "{held}");
    assert!(
        rollback["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "pending"),
        "{held}"
    );
    // Break-glass lets it go.
    glass(&good);
    let done = server.wait_stage(&good, "prod", "succeeded");
    let rollback = &done["stages"][0]["attempts"][1];
    assert_eq!(rollback["break_glass"]["by"], "ada", "{done}");
    assert_eq!(rollback["rollback_of"], bad.as_str());
}
