//! Recovery at start-up, counted: [`Engine::serve`](super::Engine::serve) hands each resumed
//! driver a [`Token`], which the driver drops once its `recover()` step is done (its recovery
//! events committed, its timers and re-run work set going) — or when it stops without getting
//! there, so a release that fails to recover is logged, not waited for forever. The service
//! reports ready only when every token is back ([`Recovery::wait`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

/// The recovery of the releases one [`Engine::serve`](super::Engine::serve) resumed.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// How many releases were resumed.
    total: usize,
    /// How many have not finished their recovery step yet.
    left: watch::Receiver<usize>,
    /// How many stopped before finishing it (their driver failed).
    failed: Arc<AtomicUsize>,
}

/// One resumed driver's part of a [`Recovery`]: given back when dropped.
pub(super) struct Token {
    left: Arc<watch::Sender<usize>>,
    failed: Arc<AtomicUsize>,
    /// Set once the driver finished its recovery step; a token dropped unset counts as failed.
    done: bool,
}

impl Token {
    /// The driver finished its recovery step.
    pub(super) fn recovered(mut self) {
        self.done = true;
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if !self.done {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        self.left.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Recovery {
    /// A recovery of `total` releases and the tokens to hand their drivers.
    pub(super) fn new(total: usize) -> (Self, Vec<Token>) {
        let (tx, left) = watch::channel(total);
        let (tx, failed) = (Arc::new(tx), Arc::new(AtomicUsize::new(0)));
        let tokens = (0..total)
            .map(|_| Token {
                left: tx.clone(),
                failed: failed.clone(),
                done: false,
            })
            .collect();
        (
            Self {
                total,
                left,
                failed,
            },
            tokens,
        )
    }

    /// How many releases were resumed.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Whether every resumed driver finished (or gave up) its recovery step.
    pub fn done(&self) -> bool {
        *self.left.borrow() == 0
    }

    /// How many resumed drivers stopped before their recovery step was done (each logged).
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    /// Resolves once every resumed driver finished (or gave up) its recovery step.
    pub async fn wait(&mut self) {
        let _ = self.left.wait_for(|n| *n == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_every_token_and_counts_the_ones_dropped_unfinished() {
        let (mut recovery, tokens) = Recovery::new(3);
        let mut tokens = tokens;
        assert!(!recovery.done());
        tokens.pop().unwrap().recovered();
        drop(tokens.pop());
        assert!(!recovery.done(), "one driver is still recovering");
        assert_eq!(recovery.failed(), 1);
        let last = tokens.pop().unwrap();
        let waiter = tokio::spawn({
            let mut recovery = recovery.clone();
            async move { recovery.wait().await }
        });
        last.recovered();
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("the wait ends when the last token is back")
            .unwrap();
        recovery.wait().await;
        assert!(recovery.done());
        assert_eq!((recovery.total(), recovery.failed()), (3, 1));
    }

    #[tokio::test]
    async fn nothing_to_recover_is_done_at_once() {
        let (mut recovery, tokens) = Recovery::new(0);
        assert!(tokens.is_empty());
        assert!(recovery.done());
        recovery.wait().await;
    }
}
