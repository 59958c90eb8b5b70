//! A failed fsync under `sluice serve`: fail-stop. The process logs what failed and that it
//! exits, exits with code 3, never answers the write 2xx, and a restart without the fault
//! recovers every commit it acknowledged and carries on.

use std::time::{Duration, Instant};

use super::{approve_with_key, audit, create, start_fault, the_pending};
use crate::support::process::{serve, serve_with, service_dir};
use crate::support::{Api, Approvals};

const ONCE: &str = r#"
version = 1
name = "once"
[[stages]]
name = "qa"
pre-approval = { approvers = ["group:approvers"] }
[[stages.tasks]]
plugin = "./kit.wasm"
idempotent = true
config = { action = "noop" }
"#;

#[test]
fn an_fsync_eio_stops_the_server_unacknowledged_and_a_restart_recovers_what_it_acknowledged() {
    let dir = service_dir();
    // An idempotent task: recovery runs it again if the unacknowledged decision (and so the
    // task's start) reached the disk anyway.
    std::fs::write(dir.path().join("pipelines/once.toml"), ONCE).unwrap();
    let failing = dir.path().join("fsync-fails");
    let rule = format!("sync:eio:while={}", failing.display());
    let (mut child, base, lines) = serve_with(dir.path(), None, &[("SLUICE_FAULT_STORAGE", &rule)]);
    let api = Api {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base,
    };
    let release = create(&api, "once");
    let id = the_pending(&api);
    let acknowledged = audit(&api);

    start_fault(&failing);
    let answer = {
        let client = api.client("bob");
        let body = serde_json::json!({"comment": "ok"})
            .to_string()
            .into_bytes();
        api.runtime.block_on(client.send(
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            Some(body),
            &[("idempotency-key", "k")],
        ))
    };
    if let Ok(reply) = &answer {
        assert!(
            !(200..300).contains(&reply.status),
            "a commit whose fsync failed was acknowledged: {}",
            reply.text()
        );
    }
    // The process stops by itself, saying why, with the storage exit code.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut said = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server kept running: {said:?}"
        );
        // Its stderr closes when it exits: wait on the next line (or the end) rather than time.
        if let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
            said.push(line);
        }
    };
    said.extend(lines.iter());
    let why = said
        .iter()
        .find(|l| l.starts_with("sluice: the data store failed"))
        .unwrap_or_else(|| panic!("no fail-stop line: {said:?}"));
    assert!(
        why.contains("sync") && why.contains("Input/output error") && why.contains("exiting"),
        "{why}"
    );
    assert_eq!(status.code(), Some(3), "{status}");

    // A restart without the fault recovers: every acknowledged commit is there, and the
    // release goes on: the unacknowledged decision may have reached the disk anyway (a failed
    // fsync says nothing of what the page cache kept), or not, and then its retry applies it.
    std::fs::remove_file(&failing).unwrap();
    let (_child, base, lines) = serve(dir.path(), None);
    let api = Api {
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base,
    };
    api.until_ready(&lines);
    let after = audit(&api);
    assert!(after.len() >= acknowledged.len(), "{after:?}");
    assert_eq!(
        after[..acknowledged.len()],
        acknowledged[..],
        "acknowledged history lost"
    );
    if api.pending() == [id.clone()] {
        let retried = approve_with_key(&api, &id, "k");
        assert_eq!(retried.status, 200, "{}", retried.text());
    }
    api.wait_stage(&release, "qa", "succeeded");
}
