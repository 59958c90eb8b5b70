//! Router tests: `router(service)` driven in process with `tower::ServiceExt::oneshot`, one
//! for each error status the API documents (400, 401, 403, 404, 409, 413, 422, 429), unknown
//! fields and an `Idempotency-Key` reused. Streams, signals and kills are tested over TCP in
//! `tests/integration/service.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

use super::router;
use crate::service::config::ApiLimits;
use crate::service::{Role, Service, ServiceConfig, User, hash_token};

/// A pipeline whose only stage waits for an approval, so nothing runs while a test looks.
const SHOP: &str = r#"
version = 1
name = "shop"
[[stages]]
name = "qa"
pre-approval = { approvers = ["alice"], timeout = "1h" }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

/// A service in a tempdir; with `shop`, serving the `shop` pipeline. Users: ada (admin),
/// rita (releaser), alice (approver), vic (viewer); each one's token is `token-of-NAME`.
pub(super) fn service(limits: ApiLimits, shop: bool) -> (tempfile::TempDir, Arc<Service>) {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    if shop {
        std::fs::copy(env!("SLUICE_PLUGIN_TESTKIT"), pipelines.join("kit.wasm")).unwrap();
        std::fs::write(pipelines.join("shop.toml"), SHOP).unwrap();
    }
    let tokens = [
        ("ada", Role::Admin),
        ("rita", Role::Releaser),
        ("alice", Role::Approver),
        ("vic", Role::Viewer),
    ]
    .into_iter()
    .map(|(name, role)| {
        let user = User {
            name: name.into(),
            roles: vec![role],
            groups: Vec::new(),
        };
        (hash_token(&format!("token-of-{name}")), user)
    })
    .collect::<BTreeMap<_, _>>();
    let config = ServiceConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        pipelines,
        tokens,
        limits,
        plugin_files: Default::default(),
        registries: Default::default(),
        pools: Default::default(),
        tls: None,
    };
    let service = Service::start(config).unwrap();
    (dir, service)
}

/// A reply: status, headers, body as JSON (`Null` if it is not).
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: axum::http::HeaderMap,
    pub(super) json: Value,
}

/// Sends one request to `app`: as `who` (`None`: no credentials), with `body` if given, and
/// `headers`.
pub(super) async fn send(
    app: &Router,
    who: Option<&str>,
    (method, uri): (&str, &str),
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(who) = who {
        request = request.header(header::AUTHORIZATION, format!("Bearer token-of-{who}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        json,
    }
}

/// The error message of a reply.
fn error(reply: &Reply) -> &str {
    reply.json["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_request_without_a_valid_token_is_401_with_a_bearer_challenge() {
    let (_dir, service) = service(ApiLimits::default(), false);
    let app = router(service);
    let get = ("GET", "/api/v1/releases");
    for reply in [
        send(&app, None, get, None, &[]).await,
        send(&app, Some("nobody"), get, None, &[]).await,
        send(
            &app,
            None,
            get,
            None,
            &[("authorization", "Basic YWRhOng=")],
        )
        .await,
    ] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.json);
        assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(!error(&reply).is_empty());
        assert!(reply.headers.contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn a_user_without_the_role_an_endpoint_needs_is_403() {
    let (_dir, service) = service(ApiLimits::default(), false);
    let app = router(service);
    let put = send(
        &app,
        Some("rita"),
        ("PUT", "/api/v1/pipelines/x"),
        Some(""),
        &[],
    )
    .await;
    assert_eq!(put.status, StatusCode::FORBIDDEN);
    assert!(error(&put).contains("admin role"), "{}", put.json);
    let create = ("POST", "/api/v1/pipelines/x/releases");
    let viewer = send(&app, Some("vic"), create, Some("{}"), &[]).await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    assert!(error(&viewer).contains("releaser role"), "{}", viewer.json);
    // break-glass decides the role once, from its `Admin` extractor.
    let glass = ("POST", "/api/v1/releases/r-1/stages/qa/break-glass");
    let why = Some(r#"{"justification": "outage"}"#);
    let releaser = send(&app, Some("rita"), glass, why, &[]).await;
    assert_eq!(releaser.status, StatusCode::FORBIDDEN);
    assert!(error(&releaser).contains("admin role"), "{}", releaser.json);
}

#[tokio::test]
async fn a_missing_route_release_pipeline_or_approval_is_a_json_404() {
    let (_dir, service) = service(ApiLimits::default(), false);
    let app = router(service);
    let route = send(&app, Some("vic"), ("GET", "/api/v1/nowhere"), None, &[]).await;
    assert_eq!(route.status, StatusCode::NOT_FOUND);
    assert_eq!(error(&route), "no such route");
    for uri in [
        "/api/v1/releases/shop-1",
        "/api/v1/pipelines/shop",
        "/api/v1/approvals/shop-1.qa.1.pre",
        "/api/v1/releases/shop-1/logs",
    ] {
        let reply = send(&app, Some("vic"), ("GET", uri), None, &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}: {}", reply.json);
        assert!(
            error(&reply).contains("there is no"),
            "{uri}: {}",
            reply.json
        );
    }
    let deploy = ("POST", "/api/v1/releases/shop-1/stages/qa/deploy");
    let reply = send(&app, Some("rita"), deploy, None, &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.json);
}

#[tokio::test]
async fn malformed_requests_are_400_saying_what_to_fix() {
    let (_dir, service) = service(ApiLimits::default(), false);
    let app = router(service);
    let create = ("POST", "/api/v1/pipelines/shop/releases");
    let unknown = send(
        &app,
        Some("rita"),
        create,
        Some(r#"{"artefacts": {}}"#),
        &[],
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        error(&unknown).contains("unknown field `artefacts`"),
        "{}",
        unknown.json
    );
    let not_json = send(&app, Some("rita"), create, Some("{"), &[]).await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert!(
        error(&not_json).starts_with("invalid JSON body"),
        "{}",
        not_json.json
    );
    let abandon = ("POST", "/api/v1/releases/shop-1/abandon");
    let fields = send(&app, Some("rita"), abandon, Some(r#"{"now": true}"#), &[]).await;
    assert_eq!(fields.status, StatusCode::BAD_REQUEST, "{}", fields.json);

    for uri in [
        "/api/v1/releases?colour=red",
        "/api/v1/releases?limit=501",
        "/api/v1/releases?offset=-1",
        "/api/v1/audit?limit=10001",
        "/api/v1/approvals?status=maybe",
        "/api/v1/releases/shop-1/stages/qa/attempts/first/tasks/t/log",
    ] {
        let reply = send(&app, Some("vic"), ("GET", uri), None, &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            reply.json
        );
        assert!(!error(&reply).is_empty(), "{uri}");
    }

    let key = [("idempotency-key", "")];
    let empty_key = send(&app, Some("rita"), create, Some("{}"), &key).await;
    assert_eq!(empty_key.status, StatusCode::BAD_REQUEST);
    assert!(
        error(&empty_key).contains("Idempotency-Key"),
        "{}",
        empty_key.json
    );

    let glass = ("POST", "/api/v1/releases/shop-1/stages/qa/break-glass");
    let blank = r#"{"justification": "  "}"#;
    let unjustified = send(&app, Some("ada"), glass, Some(blank), &[]).await;
    assert_eq!(unjustified.status, StatusCode::BAD_REQUEST);
    assert!(
        error(&unjustified).contains("justification"),
        "{}",
        unjustified.json
    );

    let reject = ("POST", "/api/v1/approvals/shop-1.qa.1.pre/reject");
    let deferred = r#"{"defer-until": "2030-01-01T00:00:00Z"}"#;
    let reply = send(&app, Some("alice"), reject, Some(deferred), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(error(&reply).contains("defer-until"), "{}", reply.json);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_json_413_declared_or_not() {
    let limits = ApiLimits {
        body_bytes: 64,
        ..ApiLimits::default()
    };
    let (_dir, service) = service(limits, false);
    let app = router(service);
    let create = ("POST", "/api/v1/pipelines/shop/releases");
    let big = format!(r#"{{"description": "{}"}}"#, "x".repeat(100));
    let length = big.len().to_string();
    let declared = [("content-length", length.as_str())];
    let reply = send(&app, Some("rita"), create, Some(&big), &declared).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error(&reply).contains("the limit is 64"), "{}", reply.json);
    // Found over the limit while read: axum's refusal, made JSON by the guard.
    let reply = send(&app, Some("rita"), create, Some(&big), &[]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        error(&reply).contains("limit of 64 bytes"),
        "{}",
        reply.json
    );
}

#[tokio::test]
async fn a_token_over_its_rate_is_429_with_retry_after() {
    let limits = ApiLimits {
        requests_per_second: 1,
        burst: 2,
        ..ApiLimits::default()
    };
    let (_dir, service) = service(limits, false);
    let app = router(service);
    let get = ("GET", "/api/v1/pipelines");
    for _ in 0..2 {
        assert_eq!(send(&app, Some("vic"), get, None, &[]).await.status, 200);
    }
    let limited = send(&app, Some("vic"), get, None, &[]).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(error(&limited).contains("rate limit"), "{}", limited.json);
    assert_eq!(limited.headers[header::RETRY_AFTER], "1");
    // Buckets are per user.
    assert_eq!(send(&app, Some("rita"), get, None, &[]).await.status, 200);
}

#[tokio::test]
async fn an_invalid_pipeline_is_422_with_its_diagnostics() {
    let (_dir, service) = service(ApiLimits::default(), false);
    let app = router(service);
    let put = ("PUT", "/api/v1/pipelines/shop");
    let reply = send(
        &app,
        Some("ada"),
        put,
        Some("version = 1\nname = \"shop\"\n"),
        &[],
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.json
    );
    assert_eq!(error(&reply), "the pipeline is invalid");
    assert!(
        reply.json["diagnostics"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    );
    let validate = ("POST", "/api/v1/pipelines/other/validate");
    let reply = send(&app, Some("rita"), validate, Some(SHOP), &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.json
    );
    assert!(error(&reply).contains("name = \"shop\""), "{}", reply.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_its_answer_and_refuses_another_request_and_a_conflict_is_409() {
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service);
    let create = ("POST", "/api/v1/pipelines/shop/releases");
    let key = [("idempotency-key", "create-1")];
    let first = send(&app, Some("rita"), create, Some("{}"), &key).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    assert!(!first.headers.contains_key("idempotent-replayed"));
    let again = send(&app, Some("rita"), create, Some("{}"), &key).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json["name"], first.json["name"]);
    let other = r#"{"description": "another"}"#;
    let reused = send(&app, Some("rita"), create, Some(other), &key).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        error(&reused).contains("Idempotency-Key"),
        "{}",
        reused.json
    );
    // Keys are per user: ada's `create-1` is a new request (admins may release).
    let ada = send(&app, Some("ada"), create, Some(other), &key).await;
    assert_eq!(ada.status, StatusCode::CREATED, "{}", ada.json);
    assert_ne!(ada.json["name"], first.json["name"]);

    let name = first.json["name"].as_str().unwrap();
    let abandon = format!("/api/v1/releases/{name}/abandon");
    let abandoned = send(&app, Some("rita"), ("POST", &abandon), None, &[]).await;
    assert_eq!(abandoned.status, StatusCode::OK, "{}", abandoned.json);
    let twice = send(&app, Some("rita"), ("POST", &abandon), None, &[]).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.json);

    let approve = format!("/api/v1/approvals/{name}.qa.1.pre/approve");
    let late = send(&app, Some("alice"), ("POST", &approve), None, &[]).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.json);
    assert_ne!(late.json["approval"]["state"], "pending", "{}", late.json);
    assert_eq!(late.json["approval"]["id"], format!("{name}.qa.1.pre"));
}

#[tokio::test]
async fn a_pipeline_name_that_is_not_a_name_is_400_before_any_write() {
    let (dir, service) = service(ApiLimits::default(), false);
    let app = router(service);
    let nameless = "version = 1\n[[stages]]\nname = \"only\"\n";
    for name in [
        "..%2Fescaped",
        "%2Fabs",
        "a%00b",
        "a%0D%0Ab",
        "a.b",
        "a%22b",
    ] {
        let put = ("PUT", &*format!("/api/v1/pipelines/{name}"));
        let reply = send(&app, Some("ada"), put, Some(nameless), &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            reply.json
        );
        assert!(
            error(&reply).starts_with("invalid pipeline name: "),
            "{}",
            reply.json
        );
    }
    assert!(!dir.path().join("escaped.toml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_durations_are_422_and_times_out_of_range_400_and_change_nothing() {
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service);
    // A releaser's validate: a diagnostic with its place, not a panic (a 500) or a wrap.
    let long = SHOP.replace("timeout = \"1h\"", "timeout = \"99999999999999999h\"");
    let validate = ("POST", "/api/v1/pipelines/shop/validate");
    let reply = send(&app, Some("rita"), validate, Some(&long), &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.json
    );
    let diagnostics = reply.json["diagnostics"].to_string();
    assert!(
        diagnostics.contains("`99999999999999999h` is too long: at most 876000h")
            && diagnostics.contains("-->"),
        "{diagnostics}"
    );

    let create = ("POST", "/api/v1/pipelines/shop/releases");
    let created = send(&app, Some("rita"), create, Some("{}"), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let name = created.json["name"].as_str().unwrap().to_owned();
    let get = format!("/api/v1/releases/{name}");
    let before = send(&app, Some("vic"), ("GET", &get), None, &[]).await.json;
    let trail = send(&app, Some("vic"), ("GET", "/api/v1/audit"), None, &[]).await;

    let approve = format!("/api/v1/approvals/{name}.qa.1.pre/approve");
    let deploy = format!("/api/v1/releases/{name}/stages/qa/deploy");
    let key = [("idempotency-key", "far-1")];
    for (who, uri, field) in [("alice", &approve, "defer-until"), ("rita", &deploy, "at")] {
        for value in [
            u64::MAX.to_string(),
            (1u64 << 63).to_string(),
            "253402387140000".into(), // one past the latest time RFC 3339 can name
            "\"99999-01-01T00:00:00Z\"".into(),
            "\"+999999-01-01T00:00:00Z\"".into(),
        ] {
            let body = format!(r#"{{"{field}": {value}}}"#);
            let reply = send(&app, Some(who), ("POST", uri), Some(&body), &key).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{body}: {}",
                reply.json
            );
            assert!(
                error(&reply).starts_with(&format!("{field} `")),
                "{body}: {}",
                reply.json
            );
        }
    }
    // Nothing stored changed: the release, the trail, and no receipt for the key.
    let after = send(&app, Some("vic"), ("GET", &get), None, &[]).await.json;
    assert_eq!(after, before);
    let trail_after = send(&app, Some("vic"), ("GET", "/api/v1/audit"), None, &[]).await;
    assert_eq!(trail_after.json, trail.json);
    let approved = send(&app, Some("alice"), ("POST", &approve), Some("{}"), &key).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.json);
    assert!(!approved.headers.contains_key("idempotent-replayed"));
}
