//! What the API promises its callers: an OpenAPI document that describes every route and the
//! shapes served, strict bodies, size and rate limits, and errors that say what to fix.

use serde_json::json;
use sluice::api::client::Reply;
use sluice::service::config::ApiLimits;

use crate::support::Server;

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
            // Every route is rate limited.
            assert!(
                op["responses"]["429"]["headers"]["Retry-After"].is_object(),
                "{method} {path} documents no 429 with Retry-After"
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
