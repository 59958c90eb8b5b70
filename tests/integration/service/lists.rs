//! Lists page through the store's indexes: approvals in a decided state a page at a time with
//! their total, releases newest first, and `/metrics` counting from the stored counts.

use serde_json::Value;
use sluice::service::config::ApiLimits;

use crate::support::Server;

fn ids(list: &Value, field: &str, key: &str) -> Vec<String> {
    list[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[key].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn decided_approvals_and_releases_page_newest_first_with_their_totals() {
    let server = Server::start("1h", ApiLimits::default());
    let releases: Vec<String> = (0..3).map(|_| server.release()).collect();
    let pending = server.get("vic", "/api/v1/approvals?limit=2");
    assert_eq!(
        (pending["total"].as_u64(), pending["offset"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(pending["approvals"].as_array().unwrap().len(), 2);
    for release in &releases {
        let reply = server.approve_as("bob", &format!("{release}.qa.1.pre"));
        assert_eq!(reply.status, 200, "{}", reply.text());
        server.wait_stage(release, "prod", "awaiting-approval");
    }
    let qa = |r: &String| format!("{r}.qa.1.pre");
    let approved = server.get("vic", "/api/v1/approvals?status=approved&limit=2");
    assert_eq!(approved["total"], 3);
    assert_eq!(
        ids(&approved, "approvals", "id"),
        [qa(&releases[2]), qa(&releases[1])],
        "newest release first"
    );
    assert!(
        approved["approvals"][0]["decisions"][0]["by"] == "bob",
        "the row is the approval as decided: {approved}"
    );
    let rest = server.get("vic", "/api/v1/approvals?status=approved&limit=2&offset=2");
    assert_eq!(
        (ids(&rest, "approvals", "id"), rest["total"].as_u64()),
        (vec![qa(&releases[0])], Some(3))
    );
    // Narrowed by stage: counted among the approved rows; by release: that release's own.
    let prod = server.get("vic", "/api/v1/approvals?status=approved&stage=prod");
    assert_eq!(
        (
            prod["total"].as_u64(),
            prod["approvals"].as_array().unwrap().len()
        ),
        (Some(0), 0)
    );
    let one = server.get(
        "vic",
        &format!("/api/v1/approvals?status=all&release={}", releases[1]),
    );
    assert_eq!(one["total"], 2, "qa approved, prod pending: {one}");
    let pending = server.get("vic", "/api/v1/approvals");
    assert_eq!(pending["total"], 3, "every prod approval waits");
    // The page size is bounded like the releases list's.
    let too_many = server.call("vic", "GET", "/api/v1/approvals?limit=501", None);
    assert_eq!(too_many.status, 400, "{}", too_many.text());
    assert!(too_many.text().contains("limit"), "{}", too_many.text());

    let listed = server.get("vic", "/api/v1/releases?pipeline=shop&limit=2&offset=1");
    assert_eq!(listed["total"], 3);
    assert_eq!(
        ids(&listed, "releases", "name"),
        [releases[1].clone(), releases[0].clone()]
    );
    let qa_state = &listed["releases"][0]["stages"][0];
    assert_eq!(
        (qa_state["name"].as_str(), qa_state["state"].as_str()),
        (Some("qa"), Some("succeeded"))
    );
    let metrics = server.call("vic", "GET", "/metrics", None).text();
    for line in [
        "sluice_releases{state=\"active\"} 3",
        "sluice_deployments{state=\"succeeded\"} 3",
        "sluice_deployments{state=\"awaiting-approval\"} 3",
        "sluice_pending_approvals 3",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}
