//! The operator's side of a served Sluice under attack: refusals (401, 403) in the audit trail
//! with who, what, why and where, and a bound on how many; a rate limit on every route, the
//! anonymous ones included (by address); `/readyz` answering from cached health, and
//! `/metrics` from counters that follow every transition.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sluice::api::client::Client;
use sluice::service::config::ApiLimits;

use crate::support::{Approvals as _, Server, token};

/// The audit trail's refusals (entries of no release).
fn refusals(server: &Server) -> Vec<Value> {
    let audit = server.get("ada", "/api/v1/audit?limit=10000");
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["release"] == "")
        .cloned()
        .collect()
}

#[test]
fn refusals_are_audited_with_who_what_why_and_where_and_never_the_token() {
    let server = Server::start("1h", ApiLimits::default());
    let pipelines = server.get("vic", "/api/v1/pipelines");
    assert_eq!(server.anonymous("/api/v1/releases").status, 401);
    let stolen = server.call("nobody", "GET", "/api/v1/releases", None);
    assert_eq!(stolen.status, 401);
    let put = server.call("vic", "PUT", "/api/v1/pipelines/evil", Some(json!("x")));
    assert_eq!(put.status, 403, "{}", put.text());
    let release = server.release();
    let override_ = server.call(
        "bob",
        "POST",
        &format!("/api/v1/approvals/{release}.qa.1.pre/approve"),
        Some(json!({"override": true})),
    );
    assert_eq!(override_.status, 403, "{}", override_.text());

    let entries = refusals(&server);
    let said: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["what"].as_str().unwrap()))
        .collect();
    let expected = [
        (
            "anonymous",
            "refused 401 GET /api/v1/releases from 127.0.0.1: no credentials",
        ),
        (
            "invalid token",
            "refused 401 GET /api/v1/releases from 127.0.0.1: the token is not valid",
        ),
        (
            "vic",
            "refused 403 PUT /api/v1/pipelines/evil from 127.0.0.1: vic does not have the admin role",
        ),
        ("bob", "refused 403 POST /api/v1/approvals/"),
    ];
    assert_eq!(said.len(), expected.len(), "{said:#?}");
    for ((actor, what), (want_actor, want_what)) in said.iter().zip(expected) {
        assert_eq!(*actor, want_actor, "{said:#?}");
        assert!(what.starts_with(want_what), "{what}\nwanted: {want_what}");
    }
    assert!(said[3].1.contains("only admins may override"), "{said:#?}");
    // The presented token is never stored, in clear or hashed.
    let trail = server.get("ada", "/api/v1/audit?limit=10000").to_string();
    assert!(!trail.contains(&token("nobody")));
    assert!(!trail.contains(&sluice::service::hash_token(&token("nobody"))));
    // Nothing else changed: no pipeline, the approval still pending.
    assert_eq!(server.get("vic", "/api/v1/pipelines"), pipelines);
    assert_eq!(server.pending(), vec![format!("{release}.qa.1.pre")]);
}

#[test]
fn a_client_refused_over_and_over_adds_a_bounded_number_of_entries() {
    // The audit bound, not the failed-authentication limit (`service::auth`), is tested here:
    // every guess is checked and refused with 401.
    let limits = ApiLimits {
        auth_failures: 1000,
        ..ApiLimits::default()
    };
    let server = Server::start("1h", limits);
    let client = Client::new(&server.base, Some("not-a-token-of-anyone".into())).unwrap();
    let statuses: Vec<u16> = server.runtime.block_on(async {
        let mut statuses = Vec::new();
        for _ in 0..150 {
            statuses.push(client.get("/api/v1/releases").await.unwrap().status);
        }
        statuses
    });
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    let recorded = refusals(&server);
    // One client's refusals are recorded 10 at once, then one every 6 seconds: far fewer
    // than one entry per request (the exact bound is `api::limit`'s unit test).
    assert!(
        (10..30).contains(&recorded.len()),
        "{} entries for 150 refusals",
        recorded.len()
    );
}

#[test]
fn every_route_is_rate_limited_the_anonymous_ones_by_address() {
    let limits = ApiLimits {
        requests_per_second: 1,
        burst: 3,
        ..ApiLimits::default()
    };
    let server = Server::start("1h", limits);
    let replies: Vec<_> = ["/healthz", "/readyz", "/metrics", "/healthz"]
        .iter()
        .map(|path| server.anonymous(path))
        .collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429], "{}", replies[3].text());
    assert!(
        replies[3].text().contains("rate limit"),
        "{}",
        replies[3].text()
    );
    assert_eq!(replies[3].header("retry-after"), Some("1"));
    // A bad token counts against the address, not against a user.
    assert_eq!(
        server
            .call("nobody", "GET", "/api/v1/releases", None)
            .status,
        429
    );
    // A user has a bucket of their own.
    assert_eq!(server.call("vic", "GET", "/metrics", None).status, 200);
}

#[test]
fn readyz_answers_from_cached_health_without_a_write_per_probe() {
    let server = Server::start("1h", ApiLimits::default());
    let before = server.service.health_checks();
    for _ in 0..60 {
        let reply = server.anonymous("/readyz");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), "ready\n");
    }
    // A check every 2 seconds in the background, not one per probe.
    let checks = server.service.health_checks() - before;
    assert!(checks < 30, "{checks} health checks for 60 probes");
}

/// Releases and deployments by state as `/metrics` says them.
fn counts(server: &Server) -> BTreeMap<String, u64> {
    let text = server.call("vic", "GET", "/metrics", None).text();
    text.lines()
        .filter(|l| l.starts_with("sluice_releases{") || l.starts_with("sluice_deployments{"))
        .map(|l| {
            let (name, n) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), n.parse().unwrap())
        })
        .collect()
}

/// The same, counted from every release in the store.
fn counted(server: &Server) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let label = |v: Value| v.as_str().unwrap().to_owned();
    for release in server.service.store().releases().unwrap() {
        let state = label(serde_json::to_value(release.state).unwrap());
        *out.entry(format!("sluice_releases{{state=\"{state}\"}}"))
            .or_default() += 1;
        for stage in &release.stages {
            let state = label(serde_json::to_value(stage.state()).unwrap());
            *out.entry(format!("sluice_deployments{{state=\"{state}\"}}"))
                .or_default() += 1;
        }
    }
    out
}

#[test]
fn metrics_counters_follow_every_transition() {
    let server = Server::start("1h", ApiLimits::default());
    assert_eq!(counts(&server), BTreeMap::new());
    let first = server.release();
    let second = server.release();
    assert_eq!(counts(&server), counted(&server));
    assert_eq!(counts(&server)["sluice_releases{state=\"active\"}"], 2);
    server.approve(&format!("{first}.qa.1.pre"));
    server.wait_pending(&[format!("{first}.prod.1.pre"), format!("{second}.qa.1.pre")]);
    let abandon = server.call(
        "rita",
        "POST",
        &format!("/api/v1/releases/{second}/abandon"),
        Some(json!({})),
    );
    assert_eq!(abandon.status, 200, "{}", abandon.text());
    assert_eq!(counts(&server), counted(&server));
    let now = counts(&server);
    assert_eq!(now["sluice_releases{state=\"abandoned\"}"], 1, "{now:#?}");
    assert_eq!(
        now["sluice_deployments{state=\"succeeded\"}"], 1,
        "{now:#?}"
    );
}
