//! Authentication and roles: no token is 401, a role or approver list that does not allow
//! the call is 403, every role against every endpoint, and guessing tokens over TCP until the
//! address is throttled.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice::api::client::Client;
use sluice::service::config::ApiLimits;

use crate::support::{Server, shop};

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
        let reply = server.approve_as(who, &qa);
        assert_eq!(reply.status, 403, "{who}: {}", reply.text());
    }
    let own = server.call(
        "alice",
        "POST",
        "/api/v1/pipelines/shop/releases",
        Some(json!({})),
    );
    let own_qa = format!("{}.qa.1.pre", own.json()["name"].as_str().unwrap());
    let reply = server.approve_as("alice", &own_qa);
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
        Some(json!({"override": true, "comment": "hotfix", "justification": "alice is out"})),
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
                ("PUT", _) => Some(shop("1h").into_bytes()),
                ("POST", _) if path.ends_with("validate") => Some(shop("1h").into_bytes()),
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

#[test]
fn bad_tokens_over_tcp_meet_a_429_and_a_valid_token_from_there_waits_until_the_bucket_refills() {
    // 60 failures a minute: one more a second once spent.
    let limits = ApiLimits {
        auth_failures: 60,
        ..ApiLimits::default()
    };
    let server = Server::start("1h", limits);
    let before = server.get("vic", "/api/v1/releases");
    let guesser = Client::new(&server.base, Some("slc_not-a-token-of-anyone".into())).unwrap();
    let replies = server.runtime.block_on(async {
        let mut replies = Vec::new();
        for _ in 0..100 {
            replies.push(guesser.get("/api/v1/releases").await.unwrap());
        }
        replies
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses[..60], [401; 60], "{statuses:?}");
    assert_eq!(statuses[60..], [429; 40], "{statuses:?}");
    let throttled = &replies[99];
    assert!(throttled.header("retry-after").is_some());
    assert!(
        throttled.text().contains("limits.auth-failures"),
        "{}",
        throttled.text()
    );
    // A valid token from 127.0.0.1 is not checked either, and a change is not made.
    let create = server.call(
        "rita",
        "POST",
        "/api/v1/pipelines/shop/releases",
        Some(json!({})),
    );
    let refused_at = Instant::now();
    assert_eq!(create.status, 429, "{}", create.text());
    // `Retry-After` is a promise: a client that waits that long is let in, its valid token
    // checked again. The wait is the thing under test, so it is the header's, not a poll.
    let retry_after: u64 = create
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a 429 without a Retry-After in seconds: {create:?}"));
    assert!(
        retry_after <= 2,
        "60 failures a minute refill one a second: {retry_after}"
    );
    let due = refused_at + Duration::from_secs(retry_after);
    // The pause is what is under test: the 429's own Retry-After, waited out, lets the
    // valid token in.
    std::thread::sleep(due.saturating_duration_since(Instant::now()));
    let reply = server.call("vic", "GET", "/api/v1/releases", None);
    assert_eq!(
        reply.status,
        200,
        "still throttled after Retry-After: {}",
        reply.text()
    );
    let after = reply.json();
    assert_eq!(after, before, "a throttled request created something");
}
