//! The document and the answers at the edges: times as the schema says, lengths it bounds,
//! every error answer JSON (405, 414, 415, 431 included), bad percent-encoding a 400 on every
//! route, and the document listing the answers every operation may give. Each refused
//! request is checked to change nothing.

use axum::Router;
use axum::http::StatusCode;
use serde_json::Value;

use super::router;
use super::tests::{Reply, send, service};
use crate::service::config::ApiLimits;

fn error(reply: &Reply) -> &str {
    reply.json["error"].as_str().unwrap_or_default()
}

const CREATE: (&str, &str) = ("POST", "/api/v1/pipelines/shop/releases");

/// What a client can see of the store: every release and the audit trail.
async fn everything(app: &Router) -> (Value, Value) {
    let releases = send(app, Some("vic"), ("GET", "/api/v1/releases"), None, &[]).await;
    let trail = send(app, Some("vic"), ("GET", "/api/v1/audit"), None, &[]).await;
    assert_eq!(releases.status, StatusCode::OK, "{}", releases.json);
    (releases.json, trail.json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_is_what_the_schema_says_and_a_refusal_names_its_field() {
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service);
    let created = send(&app, Some("rita"), CREATE, Some("{}"), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let name = created.json["name"].as_str().unwrap().to_owned();
    let approve = format!("/api/v1/approvals/{name}.qa.1.pre/approve");
    let deploy = format!("/api/v1/releases/{name}/stages/qa/deploy");
    let before = everything(&app).await;
    for (who, uri, field) in [("alice", &approve, "defer-until"), ("rita", &deploy, "at")] {
        for (value, why) in [
            ("940.5", "not a whole number of milliseconds"),
            ("18446744073709551615", "after the latest time accepted"),
            ("1e20", "out of range"),
            ("-1", "negative"),
            (r#""next tuesday""#, "not an RFC 3339 time"),
            (r#""2026-11-24T06:00:00""#, "not an RFC 3339 time"),
        ] {
            let body = format!(r#"{{"{field}": {value}}}"#);
            let reply = send(&app, Some(who), ("POST", uri), Some(&body), &[]).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
            let message = error(&reply);
            assert!(
                message.starts_with(&format!("{field} `")),
                "{body}: {message}"
            );
            assert!(message.contains(why), "{body}: {message}");
        }
    }
    assert_eq!(
        everything(&app).await,
        before,
        "a refused time changed something"
    );
    // `940.0` is an integer to JSON Schema, and here: the approval goes, its deploy time past.
    let body = r#"{"defer-until": 940.0}"#;
    let approved = send(&app, Some("alice"), ("POST", &approve), Some(body), &[]).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.json);
    let approval = &approved.json["approvals"][0];
    assert_eq!(approval["state"], "approved", "{approval}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_takes_no_time_and_strings_over_their_bound_are_400_naming_them() {
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service);
    let long = "é".repeat(2001);
    let description = format!(r#"{{"description": "{long}"}}"#);
    let reply = send(&app, Some("rita"), CREATE, Some(&description), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.json);
    assert_eq!(
        error(&reply),
        "description is 2001 characters: keep it to at most 2000"
    );
    let variable = format!(r#"{{"variables": {{"{}": "1"}}}}"#, "v".repeat(101));
    let reply = send(&app, Some("rita"), CREATE, Some(&variable), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.json);
    assert!(
        error(&reply).starts_with("variables name `vvv"),
        "{}",
        reply.json
    );
    let nothing = everything(&app).await;
    assert_eq!(nothing.0["total"], 0, "{}", nothing.0);
    // Query filters too: a name past its bound is refused, not looked up.
    for (uri, message) in [
        (
            format!("/api/v1/releases?pipeline={}", "p".repeat(65)),
            "pipeline is 65 characters: keep it to at most 64",
        ),
        (
            format!("/api/v1/approvals?release={}", "r".repeat(101)),
            "release is 101 characters: keep it to at most 100",
        ),
        (
            format!("/api/v1/approvals?stage={}", "s".repeat(101)),
            "stage is 101 characters: keep it to at most 100",
        ),
        (
            format!("/api/v1/approvals?approver={}", "a".repeat(107)),
            "approver is 107 characters: keep it to at most 106",
        ),
    ] {
        let reply = send(&app, Some("vic"), ("GET", &uri), None, &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.json);
        assert_eq!(error(&reply), message);
    }

    let created = send(&app, Some("rita"), CREATE, Some("{}"), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let name = created.json["name"].as_str().unwrap().to_owned();
    let before = everything(&app).await;
    let id = format!("{name}.qa.1.pre");
    let comment = format!(r#"{{"comment": "{long}"}}"#);
    for (verb, body, message) in [
        (
            "reject",
            r#"{"defer-until": 940}"#.to_owned(),
            "unknown field `defer-until`",
        ),
        (
            "approve",
            comment.clone(),
            "comment is 2001 characters: keep it to at most 2000",
        ),
        (
            "reject",
            comment.clone(),
            "comment is 2001 characters: keep it to at most 2000",
        ),
        (
            "reassign",
            r#"{"to": ""}"#.to_owned(),
            "to is empty: name a user, or group:NAME",
        ),
        (
            "reassign",
            format!(r#"{{"to": "{}"}}"#, "u".repeat(107)),
            "to is 107 characters: keep it to at most 106",
        ),
    ] {
        let uri = format!("/api/v1/approvals/{id}/{verb}");
        let reply = send(&app, Some("alice"), ("POST", &uri), Some(&body), &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{verb} {body}");
        assert!(error(&reply).contains(message), "{verb}: {}", reply.json);
    }
    assert_eq!(
        everything(&app).await,
        before,
        "a refused decision changed something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_api_does_not_take_are_json_errors_that_change_nothing() {
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service);
    let before = everything(&app).await;
    let gzip = [("content-encoding", "gzip")];
    // With the Authorization header: 101.
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("x-h{i}"), "1".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let big = "b".repeat(33 * 1024);
    let long = format!("/api/v1/releases?pipeline={}", "p".repeat(9000));
    type Case<'a> = (
        &'a str,
        (&'a str, &'a str),
        &'a [(&'a str, &'a str)],
        StatusCode,
        &'a str,
    );
    let cases: [Case<'_>; 8] = [
        (
            "rita",
            CREATE,
            &gzip,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding `gzip`",
        ),
        (
            "vic",
            ("GET", &long),
            &[],
            StatusCode::URI_TOO_LONG,
            "the limit is 8192",
        ),
        (
            "vic",
            ("GET", "/api/v1/releases"),
            &many,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "101 header fields",
        ),
        (
            "vic",
            ("GET", "/api/v1/releases"),
            &[("x-big", &big)],
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the limit is 32768",
        ),
        (
            "vic",
            ("GET", "/api/v1/releases?pipeline=%FF"),
            &[],
            StatusCode::BAD_REQUEST,
            "query string is not valid percent-encoded UTF-8",
        ),
        (
            "vic",
            ("GET", "/api/v1/approvals?release=%zz"),
            &[],
            StatusCode::BAD_REQUEST,
            "not followed by two hex digits",
        ),
        (
            "vic",
            ("GET", "/api/v1/releases/%FF"),
            &[],
            StatusCode::BAD_REQUEST,
            "path is not valid percent-encoded UTF-8",
        ),
        (
            "rita",
            ("DELETE", "/api/v1/releases"),
            &[],
            StatusCode::METHOD_NOT_ALLOWED,
            "DELETE is not allowed on /api/v1/releases: the Allow header lists what it takes",
        ),
    ];
    for (who, request, headers, status, message) in cases {
        let body = (request.0 == "POST").then_some("{}");
        let reply = send(&app, Some(who), request, body, headers).await;
        assert_eq!(reply.status, status, "{}: {}", request.1.len(), reply.json);
        assert!(error(&reply).contains(message), "{}", reply.json);
        assert_eq!(reply.headers["content-type"], "application/json");
        assert!(reply.headers.contains_key("x-request-id"));
    }
    assert_eq!(
        everything(&app).await,
        before,
        "a refused request changed something"
    );
    // A 405 keeps its Allow.
    let reply = send(
        &app,
        Some("rita"),
        ("PATCH", "/api/v1/pipelines/shop"),
        None,
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let allow = reply.headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("PUT"), "{allow}");
    // `identity` is no encoding: the body is read as sent.
    let identity = [("content-encoding", "identity")];
    let created = send(&app, Some("rita"), CREATE, Some("{}"), &identity).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
}

#[tokio::test]
async fn the_document_lists_every_answer_an_operation_may_give_with_the_error_body() {
    let doc = serde_json::to_value(super::openapi()).unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let responses = &operation["responses"];
            for status in ["400", "405", "413", "414", "415", "429", "431", "503"] {
                let schema = &responses[status]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
    assert!(operations >= 20, "{operations}");
    let schemas = &doc["components"]["schemas"];
    let reject = &schemas["Reject"];
    assert!(reject["properties"]["defer-until"].is_null(), "{reject}");
    assert_eq!(reject["additionalProperties"], false, "{reject}");
    let time = serde_json::to_string(&schemas["DeferUntil"]).unwrap();
    for promise in [
        r#""format":"date-time""#,
        r#""maximum":253402387139999"#,
        r#""minimum":0"#,
    ] {
        assert!(time.contains(promise), "{time}");
    }
    assert_eq!(schemas["Reassign"]["properties"]["to"]["minLength"], 1);
    for (schema, field) in [
        ("Decide", "comment"),
        ("Reject", "comment"),
        ("CreateRelease", "description"),
    ] {
        let max = &schemas[schema]["properties"][field]["maxLength"];
        assert_eq!(max, 2000, "{schema}.{field}");
    }
    // A pipeline's name in a path: the pattern of the one name rule (types/name.rs).
    let put = &doc["paths"]["/api/v1/pipelines/{name}"]["put"]["parameters"][0];
    assert_eq!(
        put["schema"]["pattern"], "^[a-z0-9][a-z0-9_-]{0,63}$",
        "{put}"
    );
    for name in ["shop", "a", "0-b_c", &"p".repeat(64)] {
        assert!(crate::types::Name::pipeline(name).is_ok(), "{name}");
    }
    for name in ["", "-a", "_a", "Shop", "é", &"p".repeat(65)] {
        assert!(crate::types::Name::pipeline(name).is_err(), "{name}");
    }
    let list = &doc["paths"]["/api/v1/releases"]["get"]["parameters"];
    let pipeline = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pipeline");
    assert_eq!(pipeline.unwrap()["schema"]["maxLength"], 64, "{list}");
    let variables = &schemas["CreateRelease"]["properties"]["variables"];
    assert_eq!(variables["propertyNames"]["maxLength"], 100, "{variables}");
    assert_eq!(
        variables["additionalProperties"]["maxLength"], 4096,
        "{variables}"
    );
}
