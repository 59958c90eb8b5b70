//! Waiting between tries: exponential backoff with jitter, and a sleep on the host's clock.

use std::time::Duration;

/// The waits before each retry: `first`, doubled each time up to `max`, each drawn at random
/// from its upper half (so that many tasks retrying one server do not retry in step).
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self {
            next: first.min(max),
            max,
        }
    }

    /// The wait before the next retry: what the server asked for (`retry-after`, at most
    /// `max`), or the next step of the backoff, jittered.
    pub(crate) fn next_wait(&mut self, asked: Option<Duration>) -> Duration {
        let step = self.step();
        if let Some(asked) = asked {
            return asked.min(self.max);
        }
        jitter(step, wasip2::random::random::get_random_u64())
    }

    /// The next step of the backoff, before jitter.
    fn step(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step
    }
}

/// A duration in `[d/2, d]`, chosen by `random`.
fn jitter(d: Duration, random: u64) -> Duration {
    let half = d / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(random % nanos.saturating_add(1))
}

/// Blocks for `d` on the host's monotonic clock.
pub(crate) fn sleep(d: Duration) {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    wasip2::clocks::monotonic_clock::subscribe_duration(nanos).block();
}
