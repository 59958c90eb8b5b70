//! Fault injection for the kill tests: with `SLUICE_FAULT_PAUSE_AFTER_COMMIT=N` the process
//! announces `sluice-fault: paused after commit N` on stderr right after its Nth durable commit
//! and then stops making progress, so a test can SIGKILL it at exactly that point. Unset (always,
//! outside tests), this costs one relaxed atomic increment per commit.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static COMMITS: AtomicU64 = AtomicU64::new(0);

fn pause_at() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| {
        std::env::var("SLUICE_FAULT_PAUSE_AFTER_COMMIT")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

pub(super) fn after_commit() {
    let n = COMMITS.fetch_add(1, Ordering::Relaxed) + 1;
    if pause_at() == Some(n) {
        eprintln!("sluice-fault: paused after commit {n}");
        loop {
            std::thread::park();
        }
    }
}
