//! The SIGTERM drain: wait, woken by commits, until nothing runs or the grace passes. A read
//! of what runs that fails never ends the drain early: it counts as "still running".

use std::time::Duration;

use tokio::sync::watch;

use crate::store::StoreError;

/// What a read of "is anything in progress?" means for the drain: a failed read is "yes".
pub(super) fn still_running(read: Result<bool, StoreError>) -> bool {
    read.unwrap_or_else(|e| {
        tracing::error!("the drain cannot tell whether tasks run (waiting on): {e}");
        true
    })
}

/// Waits until `running()` says no, looking again after each commit (`commits` changes), or
/// until `grace` passes; true when drained.
pub(super) async fn drain(
    mut commits: watch::Receiver<u64>,
    grace: Duration,
    running: impl Fn() -> bool,
) -> bool {
    // Checked: a grace past what the clock can hold has no deadline (waits for the tasks).
    let deadline = tokio::time::Instant::now().checked_add(grace);
    while running() {
        let changed = commits.changed();
        let woken = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, changed).await,
            None => Ok(changed.await),
        };
        match woken {
            Ok(Ok(())) => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    const BOUND: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn a_failed_read_keeps_the_drain_waiting_until_the_grace_passes() {
        let (commits, watched) = watch::channel(0u64);
        let reads = AtomicUsize::new(0);
        let failing = || {
            reads.fetch_add(1, Ordering::SeqCst);
            still_running(Err(StoreError::Storage("injected read failure".into())))
        };
        let draining = drain(watched, Duration::from_millis(50), failing);
        // Commits keep coming: each makes the drain read again, and every read fails.
        let committer = tokio::spawn(async move {
            for n in 1..=3 {
                commits.send_replace(n);
                tokio::task::yield_now().await;
            }
            commits
        });
        let drained = tokio::time::timeout(BOUND, draining)
            .await
            .expect("bounded");
        assert!(!drained, "a failed read must not end the drain as drained");
        assert!(reads.load(Ordering::SeqCst) >= 1);
        drop(committer.await.unwrap());
    }

    #[tokio::test]
    async fn the_drain_ends_on_the_commit_after_which_nothing_runs() {
        let (commits, watched) = watch::channel(0u64);
        let running = Arc::new(AtomicBool::new(true));
        let reads = Arc::new(AtomicUsize::new(0));
        let (r, n) = (running.clone(), reads.clone());
        let probe = move || {
            n.fetch_add(1, Ordering::SeqCst);
            still_running(Ok(r.load(Ordering::SeqCst)))
        };
        let draining = tokio::spawn(drain(watched, Duration::from_secs(3600), probe));
        // Wait (bounded) until the drain looked once and waits on commits; then the last task
        // ends with a commit.
        tokio::time::timeout(BOUND, async {
            while reads.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the drain reads");
        running.store(false, Ordering::SeqCst);
        commits.send_replace(1);
        let drained = tokio::time::timeout(BOUND, draining)
            .await
            .expect("bounded")
            .unwrap();
        assert!(drained);
        // A successful "nothing runs" read ends it at once.
        let (_tx, idle) = watch::channel(0u64);
        assert!(drain(idle, Duration::ZERO, || still_running(Ok(false))).await);
    }
}
