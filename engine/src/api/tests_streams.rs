//! Router tests of event streams: the caps per user and in all (429 with `Retry-After`, a slot
//! given back when a stream goes), `Last-Event-ID` parsed strictly (u64::MAX is a 400 in every
//! build), and a stream resuming exactly after the id it was given. Streams over TCP (a log
//! followed, `stream-max`) are in `tests/integration/service/stream_limits.rs`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use super::router;
use super::tests::{send, service};
use crate::service::config::ApiLimits;

const AUDIT: &str = "/api/v1/audit?follow=true&limit=0";
const LOG: &str = "/api/v1/releases/shop-1/stages/qa/attempts/1/tasks/kit/log?follow=true";

/// Sends a GET as `who` with `headers`; the response, its body unread (a stream stays open
/// while it is held).
async fn open(app: &Router, who: &str, uri: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = Request::builder()
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer token-of-{who}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// A refused stream's status, `Retry-After` and error message.
async fn refusal(response: Response) -> (StatusCode, Option<String>, String) {
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (
        status,
        retry,
        json["error"].as_str().unwrap_or("").to_owned(),
    )
}

/// The next `audit` event's id and entry, within a bound.
async fn next_entry(body: &mut Body, buffer: &mut String) -> (u64, Value) {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut data) = (None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse().unwrap());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).unwrap());
                }
            }
            // Comments (keep-alives) carry neither.
            if let (Some(id), Some(data)) = (id, data) {
                return (id, data);
            }
            continue;
        }
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .expect("an event within 30s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buffer.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
}

async fn trail(app: &Router) -> Vec<Value> {
    let list = send(
        app,
        Some("vic"),
        ("GET", "/api/v1/audit?limit=10000"),
        None,
        &[],
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    list.json["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn streams_over_the_cap_of_a_user_or_of_all_are_429_until_one_closes() {
    let limits = ApiLimits {
        streams: 3,
        streams_per_user: 2,
        ..ApiLimits::default()
    };
    let (_dir, service) = service(limits, false);
    let app = router(service.clone());
    let before = service.store().audit().unwrap().len();

    let first = open(&app, "vic", AUDIT, &[]).await;
    let second = open(&app, "vic", AUDIT, &[]).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    // A third of vic's, audit or log: past the per-user cap.
    for uri in [AUDIT, LOG] {
        let (status, retry, why) = refusal(open(&app, "vic", uri, &[]).await).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{uri}: {why}");
        assert_eq!(retry.as_deref(), Some("5"));
        assert!(
            why.contains("vic has 2 event streams open")
                && why.contains("limits.streams-per-user in sluice.toml"),
            "{why}"
        );
    }
    // Lists are not streams: vic still reads the trail.
    let list = send(&app, Some("vic"), ("GET", "/api/v1/audit"), None, &[]).await;
    assert_eq!(list.status, StatusCode::OK);

    // Another user takes the last of the server's; the next is past the global cap.
    let third = open(&app, "ada", AUDIT, &[]).await;
    assert_eq!(third.status(), StatusCode::OK);
    let (status, retry, why) = refusal(open(&app, "rita", AUDIT, &[]).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{why}");
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(
        why.contains("the server has 3 event streams open")
            && why.contains("limits.streams in sluice.toml"),
        "{why}"
    );

    // A stream that goes gives its place back: to its user, and to everyone.
    drop(first);
    let again = open(&app, "vic", AUDIT, &[]).await;
    assert_eq!(again.status(), StatusCode::OK);
    drop((second, third));
    let rita = open(&app, "rita", AUDIT, &[]).await;
    assert_eq!(rita.status(), StatusCode::OK);
    // The refusals wrote nothing.
    assert_eq!(service.store().audit().unwrap().len(), before);
    drop((again, rita));
}

#[tokio::test]
async fn a_last_event_id_that_is_not_an_id_or_has_no_successor_is_400_and_takes_no_slot() {
    let limits = ApiLimits {
        streams_per_user: 1,
        ..ApiLimits::default()
    };
    let (_dir, service) = service(limits, false);
    let app = router(service.clone());
    let max = u64::MAX.to_string();
    for uri in [AUDIT, LOG, "/api/v1/audit"] {
        for (value, says) in [
            (
                max.as_str(),
                "Last-Event-ID 18446744073709551615 is past the last",
            ),
            ("-1", "Last-Event-ID `-1` is not an event id"),
            ("12abc", "Last-Event-ID `12abc` is not an event id"),
            ("", "Last-Event-ID `` is not an event id"),
            ("1e3", "Last-Event-ID `1e3` is not an event id"),
            ("18446744073709551616", "is not an event id"),
        ] {
            let refused = open(&app, "vic", uri, &[("last-event-id", value)]).await;
            let (status, _, why) = refusal(refused).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {value}: {why}");
            assert!(why.contains(says), "{uri} {value}: {why}");
        }
        let twice = [("last-event-id", "1"), ("last-event-id", "2")];
        let (status, _, why) = refusal(open(&app, "vic", uri, &twice).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}");
        assert!(why.contains("more than once"), "{why}");
    }
    // None of them took vic's one stream; the id before the last is an id.
    let near = (u64::MAX - 1).to_string();
    let stream = open(&app, "vic", AUDIT, &[("last-event-id", &near)]).await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(service.store().audit().unwrap().len(), 0);
}

#[tokio::test]
async fn a_stream_resumes_exactly_after_its_last_event_id_and_limit_0_starts_at_the_end() {
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service.clone());
    let create = ("POST", "/api/v1/pipelines/shop/releases");
    for _ in 0..3 {
        let created = send(&app, Some("rita"), create, Some("{}"), &[]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    }
    let listed = trail(&app).await;
    assert!(listed.len() >= 3, "{listed:?}");
    let seen = listed[listed.len() / 2]["seq"].as_u64().unwrap();
    let after: Vec<&Value> = listed
        .iter()
        .filter(|e| e["seq"].as_u64() > Some(seen))
        .collect();

    // From the header, and from `after`: the entries after it, each once, in order.
    let id = seen.to_string();
    let resume = [("last-event-id", id.as_str())];
    let by_header = open(&app, "vic", "/api/v1/audit?follow=true", &resume).await;
    let uri = format!("/api/v1/audit?follow=true&after={seen}");
    let by_after = open(&app, "vic", &uri, &[]).await;
    for response in [by_header, by_after] {
        assert_eq!(response.status(), StatusCode::OK);
        let (mut body, mut buffer) = (response.into_body(), String::new());
        for entry in &after {
            let (id, data) = next_entry(&mut body, &mut buffer).await;
            assert_eq!(Some(id), entry["seq"].as_u64());
            assert_eq!(&data, *entry);
        }
    }
    // The same after a release filter: only that release's entries after the id.
    let release = listed.last().unwrap()["release"]
        .as_str()
        .unwrap()
        .to_owned();
    let uri = format!("/api/v1/audit?follow=true&release={release}&after={seen}");
    let mine: Vec<&&Value> = after.iter().filter(|e| e["release"] == release).collect();
    let (mut body, mut buffer) = (
        open(&app, "vic", &uri, &[]).await.into_body(),
        String::new(),
    );
    for entry in mine {
        assert_eq!(&next_entry(&mut body, &mut buffer).await.1, *entry);
    }

    // `limit=0`: nothing old, the next entry to commit first.
    let fresh = open(&app, "vic", AUDIT, &[]).await;
    let (mut body, mut buffer) = (fresh.into_body(), String::new());
    let created = send(&app, Some("rita"), create, Some("{}"), &[]).await;
    let name = created.json["name"].as_str().unwrap().to_owned();
    // The trail's other releases may still be settling; the new one's first entry follows.
    loop {
        let (id, data) = next_entry(&mut body, &mut buffer).await;
        assert!(
            id >= listed.len() as u64,
            "{id}: an entry listed before the stream opened"
        );
        if data["release"] == name {
            assert_eq!(data["what"], "created");
            break;
        }
    }
}

#[tokio::test]
async fn pending_approvals_include_every_commit_in_the_trail_even_one_the_engine_has_not_reported()
{
    let (_dir, service) = service(ApiLimits::default(), true);
    let app = router(service.clone());
    let stream = open(&app, "vic", AUDIT, &[]).await;
    let (mut body, mut buffer) = (stream.into_body(), String::new());
    let create = ("POST", "/api/v1/pipelines/shop/releases");
    let created = send(&app, Some("rita"), create, Some("{}"), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let waiting = |service: &crate::service::Service| {
        service.store().release("shop-1").unwrap().filter(|r| {
            crate::store::approvals_of(r)
                .any(|a| a.approval.state == crate::core::ApprovalState::Pending)
        })
    };
    let stored = loop {
        if let Some(release) = waiting(&service) {
            break release;
        }
        next_entry(&mut body, &mut buffer).await;
    };
    // A commit the engine never reports to the service: a copy of shop-1 stored directly, as
    // the store has a commit a moment before the engine tells the views.
    let mut copy = stored.clone();
    copy.name = "shop-99".into();
    copy.number = 99;
    service
        .store()
        .save(&copy, "test", "planted", None, None)
        .await
        .unwrap();
    let listed = send(&app, Some("vic"), ("GET", "/api/v1/approvals"), None, &[]).await;
    let ids: Vec<&str> = listed.json["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"shop-99.qa.1.pre"), "{ids:?}");
    assert!(ids.contains(&"shop-1.qa.1.pre"), "{ids:?}");
}
