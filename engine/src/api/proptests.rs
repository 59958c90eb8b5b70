//! Property tests of the API's JSON bodies: arbitrary JSON values, and bodies near the valid
//! ones (the real field names with values of every type), sent to every POST and PUT route as
//! every kind of user. No input may panic the server or answer 5xx: every refusal is a 4xx
//! with a JSON error saying what to fix. Bounded cases, no regression files: part of
//! `cargo test`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use super::router;
use super::tests::{send, service};
use crate::service::config::ApiLimits;

/// Every POST and PUT route, with the ids of a real release and approval, so that bodies
/// reach the handlers' checks and the core.
const ROUTES: [(&str, &str); 11] = [
    ("PUT", "/api/v1/pipelines/shop"),
    ("POST", "/api/v1/pipelines/shop/validate"),
    ("POST", "/api/v1/pipelines/shop/releases"),
    ("POST", "/api/v1/releases/shop-1/abandon"),
    ("POST", "/api/v1/releases/shop-1/stages/qa/deploy"),
    ("POST", "/api/v1/releases/shop-1/stages/qa/cancel"),
    ("POST", "/api/v1/releases/shop-1/stages/qa/break-glass"),
    ("POST", "/api/v1/approvals/shop-1.qa.1.pre/approve"),
    ("POST", "/api/v1/approvals/shop-1.qa.1.pre/reject"),
    ("POST", "/api/v1/approvals/shop-1.qa.1.pre/reassign"),
    ("POST", "/api/v1/pipelines/nope/releases"),
];

/// The field names the bodies have, and a few near them.
const FIELDS: [&str; 14] = [
    "artifacts",
    "variables",
    "description",
    "at",
    "justification",
    "comment",
    "override",
    "defer-until",
    "to",
    "defer_until",
    "Comment",
    "",
    "group:approvers",
    "sluice.release",
];

/// Users of every role (see `tests::service`).
const WHO: [&str; 4] = ["ada", "rita", "alice", "vic"];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        Just("alice".to_owned()),
        Just("group:approvers".to_owned()),
        Just("2030-01-01T00:00:00Z".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("../../etc/passwd".to_owned()),
        Just("a\u{0}b\r\nc\u{202e}".to_owned()),
        "[a-z]{1,120}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ]
}

/// Any JSON value, nested a little.
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
        1 => text(),
    ]
}

/// An object of the real field names with values of any type: a body near the valid ones.
fn near_valid() -> impl Strategy<Value = Value> {
    let map = prop::collection::btree_map(
        prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
        prop_oneof![
            leaf(),
            prop::collection::btree_map(text(), text().prop_map(Value::String), 0..3)
                .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ],
        0..4,
    );
    map.prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A body: any JSON, a near-valid object, or text that is not JSON (or is cut short).
fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => json().prop_map(|v| v.to_string()),
        3 => near_valid().prop_map(|v| v.to_string()),
        1 => "\\PC{0,40}",
        1 => near_valid().prop_map(|v| {
            let s = v.to_string();
            s[..s.floor_char_boundary(s.len() / 2)].to_owned()
        }),
    ]
}

#[test]
fn no_json_body_on_any_post_or_put_route_panics_or_is_a_5xx() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // No rate limit in the way: every case reaches its handler.
    let limits = ApiLimits {
        requests_per_second: 1_000_000,
        burst: 1_000_000,
        ..ApiLimits::default()
    };
    let (_dir, service) = runtime.block_on(async { service(limits, true) });
    let app = router(service);
    runtime.block_on(async {
        let created = send(
            &app,
            Some("rita"),
            ("POST", "/api/v1/pipelines/shop/releases"),
            Some("{}"),
            &[],
        )
        .await;
        assert_eq!(created.json["name"], "shop-1", "{}", created.json);
    });
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let case = (
        prop::sample::select(ROUTES.to_vec()),
        prop::sample::select(WHO.to_vec()),
        body(),
    );
    runner
        .run(&case, |((method, uri), who, body)| {
            let reply = runtime.block_on(send(&app, Some(who), (method, uri), Some(&body), &[]));
            let status = reply.status;
            prop_assert!(
                !status.is_server_error(),
                "{method} {uri} as {who} with {body}: {status} {}",
                reply.json
            );
            if status.is_client_error() {
                let error = reply.json["error"].as_str().unwrap_or_default();
                if error.is_empty() {
                    return Err(TestCaseError::fail(format!(
                        "{method} {uri} as {who} with {body}: {status} without a message: {}",
                        reply.json
                    )));
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
