//! `/readyz` says `recovering` until every release resumed at start has recovered: its
//! recovery committed (a task the kill interrupted failed, in the audit trail) and its work
//! set going again; the server listens the whole time.

use serde_json::Value;

use super::{add_slow, api, create, kill};
use crate::support::process::{serve, service_dir, wait_line};
use crate::support::{Api, Approvals};

/// How many releases are mid-task when the server is killed.
const RELEASES: usize = 3;

/// The state of the task of `release`'s `build` stage, and why its attempt ended.
fn task(api: &Api, release: &str) -> (String, String) {
    let view = api.get("vic", &format!("/api/v1/releases/{release}"));
    let attempt = &view["stages"][0]["attempts"][0];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&attempt["tasks"][0]["state"]),
        text(&attempt["reason"]),
    )
}

#[test]
fn readyz_turns_200_only_after_the_recovery_commits_are_in_the_audit_trail() {
    let dir = service_dir();
    add_slow(dir.path());
    let (child, base, _lines) = serve(dir.path(), None);
    let server = api(base);
    let names: Vec<String> = (0..RELEASES).map(|_| create(&server, "slow")).collect();
    for name in &names {
        server.wait_stage(name, "build", "in-progress");
    }
    server.wait("every task running", |api| {
        names.iter().all(|name| task(api, name).0 == "running")
    });
    kill(child);

    // Restarted, paused right after its first commit (a recovery's): it listens, and says
    // it is recovering, for as long as recovery is not done.
    let (child, base, lines) = serve(dir.path(), Some(1));
    wait_line(&lines, "sluice-fault: paused after commit 1");
    let paused = api(base);
    let reply = paused.anonymous("/readyz");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.text().contains("recovering"), "{}", reply.text());
    kill(child);

    let (child, base, lines) = serve(dir.path(), None);
    let server = api(base);
    server.until_ready(&lines);
    // Ready: every interrupted task's failure is committed, and in the audit trail.
    for name in &names {
        let (state, reason) = task(&server, name);
        assert_eq!(state, "failed", "{name}");
        assert!(reason.contains("interrupted by engine restart"), "{reason}");
        let audit = server.get("vic", &format!("/api/v1/audit?release={name}"));
        let entries = audit["entries"].as_array().unwrap();
        assert!(
            entries.iter().any(|e| e["actor"] == "engine"
                && e["what"]
                    .as_str()
                    .unwrap()
                    .contains("interrupted by engine restart")),
            "{name}: {entries:#?}"
        );
    }
    drop(lines);
    kill(child);
}
