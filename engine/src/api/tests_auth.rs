//! Router tests of authentication as an attacker tries it: the `Bearer` scheme in any case,
//! two `Authorization` headers, and guessing tokens from one address until it is throttled
//! (and audited, with the bound) — requests from other addresses untouched.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

use super::router;
use super::tests::service;
use crate::service::config::ApiLimits;

/// The guesser's address, and everyone else's.
const GUESSER: &str = "10.0.0.66:4000";
const OTHER: &str = "10.0.0.7:4000";

/// Sends `method uri` from `peer` with these `Authorization` header values (in order) and
/// `body`: status, headers, body as JSON (`Null` if it is not).
async fn call(
    app: &Router,
    peer: &str,
    (method, uri): (&str, &str),
    authorization: &[&str],
    body: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    for value in authorization {
        request = request.header(header::AUTHORIZATION, *value);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
    let mut request = request.body(body).unwrap();
    let addr: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(addr));
    let response = app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

const RELEASES: (&str, &str) = ("GET", "/api/v1/releases");

/// The refusals in the audit trail (entries of no release), read by ada from `OTHER`.
async fn refusals(app: &Router) -> Vec<(String, String)> {
    let audit = ("GET", "/api/v1/audit?limit=10000");
    let (status, _, json) = call(app, OTHER, audit, &["Bearer token-of-ada"], None).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["release"] == "")
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (text("actor"), text("what"))
        })
        .collect()
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case_and_anything_else_is_401() {
    let (_dir, service) = service(ApiLimits::default(), false);
    let app = router(service);
    for good in [
        "Bearer token-of-vic",
        "bearer token-of-vic",
        "BEARER token-of-vic",
        "bEaReR    token-of-vic",
    ] {
        let (status, _, json) = call(&app, OTHER, RELEASES, &[good], None).await;
        assert_eq!(status, StatusCode::OK, "{good}: {json}");
    }
    for bad in [
        "Bearertoken-of-vic",
        "Bearer",
        "Bearer ",
        "Bearer\ttoken-of-vic",
        "Bearer token-of-vic token-of-ada",
        "Bearer token-of-vic, Bearer token-of-ada",
        "Basic dmljOng=",
        "Bearers token-of-vic",
    ] {
        let (status, headers, json) = call(&app, OTHER, RELEASES, &[bad], None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {json}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(
            json["error"], "the Authorization header must be `Bearer <token>`",
            "{bad}"
        );
    }
}

#[tokio::test]
async fn two_authorization_headers_are_a_400_whichever_is_valid_and_change_nothing() {
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service);
    let create = ("POST", "/api/v1/pipelines/shop/releases");
    let (rita, vic, bad) = (
        "Bearer token-of-rita",
        "Bearer token-of-vic",
        "Bearer not-a-token",
    );
    for pair in [
        [rita, bad],
        [bad, rita],
        [vic, rita],
        [rita, vic],
        [rita, rita],
    ] {
        for route in [RELEASES, create] {
            let (status, _, json) = call(&app, OTHER, route, &pair, Some("{}")).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{pair:?} {route:?}: {json}"
            );
            assert_eq!(
                json["error"], "send one Authorization header: this request has more than one",
                "{pair:?}"
            );
        }
    }
    // Nothing was created by any of them; a route that does not authenticate ignores them.
    let (status, _, list) = call(&app, OTHER, RELEASES, &[vic], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 0, "{list}");
    let (status, _, _) = call(&app, OTHER, ("GET", "/healthz"), &[rita, bad], None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_hundred_bad_tokens_from_one_address_meet_a_429_and_a_valid_token_there_waits_too() {
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service);
    let mut statuses = Vec::new();
    for n in 0..100 {
        let guess = format!("Bearer guess-{n}");
        let (status, headers, json) = call(&app, GUESSER, RELEASES, &[&guess], None).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = headers[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(wait >= 1, "{wait}");
            let error = json["error"].as_str().unwrap();
            assert!(error.contains("limits.auth-failures"), "{error}");
            assert!(error.contains("more than 20 a minute"), "{error}");
        }
        statuses.push(status.as_u16());
    }
    // The default: 20 failures, then every guess is refused unchecked.
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert_eq!(statuses[20..], [429; 80], "{statuses:?}");
    // A valid token from that address waits too (else its answer would tell a right guess
    // from a wrong one), and so does a change; nothing is created.
    let (status, _, _) = call(&app, GUESSER, RELEASES, &["Bearer token-of-vic"], None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let create = ("POST", "/api/v1/pipelines/shop/releases");
    let rita = ["Bearer token-of-rita"];
    let (status, _, _) = call(&app, GUESSER, create, &rita, Some("{}")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Another address is not held; a route that does not authenticate is not either.
    let (status, _, list) = call(&app, OTHER, RELEASES, &["Bearer token-of-vic"], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list["total"], 0,
        "the throttled create went through: {list}"
    );
    let health = ("GET", "/healthz");
    let (status, _, _) = call(&app, GUESSER, health, &["Bearer guess"], None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_and_repeated_headers_count_as_failures_but_not_on_routes_without_auth() {
    let limits = ApiLimits {
        auth_failures: 3,
        ..ApiLimits::default()
    };
    let (_dir, service) = service(limits, false);
    let app = router(service);
    // Guesses on routes that do not authenticate tell nothing and cost nothing.
    for path in ["/healthz", "/readyz", "/api/v1/nowhere"] {
        for _ in 0..10 {
            let (status, _, _) = call(&app, GUESSER, ("GET", path), &["Bearer guess"], None).await;
            assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        }
    }
    let vic = "Bearer token-of-vic";
    let (status, _, _) = call(&app, GUESSER, RELEASES, &[vic], None).await;
    assert_eq!(status, StatusCode::OK);
    // A malformed header, two headers, a bad token: three failures; then the address waits.
    for (headers, want) in [
        (&["Basic dmljOng="][..], StatusCode::UNAUTHORIZED),
        (&[vic, vic][..], StatusCode::BAD_REQUEST),
        (&["Bearer guess"][..], StatusCode::UNAUTHORIZED),
        (&[vic][..], StatusCode::TOO_MANY_REQUESTS),
    ] {
        let (status, _, json) = call(&app, GUESSER, RELEASES, headers, None).await;
        assert_eq!(status, want, "{headers:?}: {json}");
    }
    // No credentials at all is not a failure, and is answered as before.
    let (status, _, _) = call(&app, GUESSER, RELEASES, &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn throttled_guesses_are_audited_within_the_refusal_bound_and_never_the_token() {
    let limits = ApiLimits {
        auth_failures: 4,
        ..ApiLimits::default()
    };
    let (_dir, service) = service(limits, false);
    let app = router(service);
    for n in 0..200 {
        let guess = format!("Bearer secret-guess-{n}");
        call(&app, GUESSER, RELEASES, &[&guess], None).await;
    }
    let entries = refusals(&app).await;
    // The client's refusal bound records 10 at once (a few more if seconds pass): 4 × 401,
    // then the 429s of credentials refused unchecked.
    assert!((10..20).contains(&entries.len()), "{entries:#?}");
    for (i, (actor, what)) in entries.iter().take(10).enumerate() {
        let (want_actor, want_what) = match i {
            0..4 => (
                "invalid token",
                "refused 401 GET /api/v1/releases from 10.0.0.66",
            ),
            _ => (
                "unchecked credentials",
                "refused 429 GET /api/v1/releases from 10.0.0.66: too many failed authentications",
            ),
        };
        assert_eq!(actor, want_actor, "{entries:#?}");
        assert!(what.starts_with(want_what), "{what}");
    }
    let trail = format!("{entries:?}");
    assert!(!trail.contains("secret-guess"), "{trail}");
}
