//! The rate limit every route has, and the bound on how many refusals reach the audit trail.
//!
//! Requests are counted per client: by user for a request with a valid token, by peer address
//! for every other one (`/healthz`, `/readyz`, `/metrics`, a missing or invalid token), each in
//! a token bucket of `limits.requests-per-second` and `limits.burst`. Over it, 429 with
//! `Retry-After`.
//!
//! **Refusals (401, 403) are audited, with a bound.** A client's refusals are recorded through a
//! second, slower bucket of its own ([`REFUSALS_BURST`] at once, then one every
//! [`REFUSAL_EVERY`]) and a bucket shared by every client ([`ALL_REFUSALS_BURST`] at once, then
//! [`ALL_REFUSALS_PER_SECOND`] a second), so a client sending 401s forever — or many clients
//! from many addresses — add entries at a bounded rate, never one per request. A refusal not
//! recorded is counted, and the client's next recorded refusal says how many went unrecorded
//! before it (coalescing). The 429 of the request rate is never recorded: it is the limiter's
//! own answer; the 429 of a throttled authentication is, as a refusal like a 401.
//!
//! **Failed authentications are limited per address** (`limits.auth-failures`, a minute): a
//! bucket of that many, refilled at that rate, charged for each presented token no user has
//! (and each malformed or repeated `Authorization` header). While an address's bucket is
//! spent, its credentials are not checked at all (`auth` answers 429 with `Retry-After`), so
//! a guess cannot succeed while it is throttled.
//!
//! **The table of clients is bounded** ([`MAX_CLIENTS`]): when it is full, clients whose
//! buckets have filled up again are dropped first (forgetting them changes nothing: a new
//! bucket starts full), then the client seen longest ago; so an attacker with many addresses
//! cannot grow it, only reset the oldest entries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::service::config::ApiLimits;

/// Clients the table holds at most.
pub(super) const MAX_CLIENTS: usize = 10_000;
/// Refusals of one client recorded at once.
pub(super) const REFUSALS_BURST: f64 = 10.0;
/// Then one refusal of that client recorded this often.
pub(super) const REFUSAL_EVERY: Duration = Duration::from_secs(6);
/// Refusals of all clients together recorded at once.
pub(super) const ALL_REFUSALS_BURST: f64 = 100.0;
/// Then this many a second.
pub(super) const ALL_REFUSALS_PER_SECOND: f64 = 5.0;

/// A token bucket: `tokens` as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    /// Refills up to `now`; takes one token if there is one, else says how long until there is.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), f64> {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err((1.0 - self.tokens) / rate)
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = self.at.max(now);
    }
}

/// An address's failed authentications: a bucket of `per_minute`, refilled at that rate (the
/// setting as last applied, so that a full one can be told apart and forgotten).
#[derive(Debug, Clone, Copy)]
struct Failures {
    bucket: Bucket,
    per_minute: f64,
}

impl Failures {
    fn refill(&mut self, now: Instant) {
        self.bucket
            .refill(self.per_minute / 60.0, self.per_minute, now);
    }
}

/// One client's buckets.
struct Client {
    requests: Bucket,
    refusals: Bucket,
    /// Failed authentications (peer addresses only); `None` until the first one.
    failures: Option<Failures>,
    /// Refusals not recorded since the last one that was.
    unrecorded: u64,
    seen: Instant,
}

/// Who a limit counts: a user, or a peer address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum ClientKey {
    User(String),
    Peer(String),
}

/// The limiter's state: every client's buckets, and the shared refusal bucket.
pub(super) struct Limiter {
    state: Mutex<State>,
}

struct State {
    clients: HashMap<ClientKey, Client>,
    all_refusals: Bucket,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                clients: HashMap::new(),
                all_refusals: Bucket::full(ALL_REFUSALS_BURST, Instant::now()),
            }),
        }
    }
}

fn refusal_rate() -> f64 {
    1.0 / REFUSAL_EVERY.as_secs_f64()
}

impl Limiter {
    /// Takes one request of `key`'s bucket; or the whole seconds to wait (at least 1).
    pub(super) fn admit(&self, key: &ClientKey, rate: u32, burst: u32) -> Result<(), u64> {
        self.admit_at(key, rate, burst, Instant::now())
    }

    fn admit_at(&self, key: &ClientKey, rate: u32, burst: u32, now: Instant) -> Result<(), u64> {
        let (rate, burst) = (f64::from(rate.max(1)), f64::from(burst.max(1)));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let client = state.client(key, rate, burst, now);
        client.seen = now;
        client
            .requests
            .take(rate, burst, now)
            .map_err(|wait| wait.ceil().max(1.0) as u64)
    }

    /// Whether `key`'s refusal is to be recorded now: `Some(n)` with the refusals of this
    /// client left unrecorded before it, or `None` (it is counted, for the next one).
    pub(super) fn record_refusal(&self, key: &ClientKey, rate: u32, burst: u32) -> Option<u64> {
        self.record_refusal_at(key, rate, burst, Instant::now())
    }

    fn record_refusal_at(
        &self,
        key: &ClientKey,
        rate: u32,
        burst: u32,
        now: Instant,
    ) -> Option<u64> {
        let (rate, burst) = (f64::from(rate.max(1)), f64::from(burst.max(1)));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let State {
            clients,
            all_refusals,
        } = &mut *state;
        let client = client_in(clients, key, rate, burst, now);
        // Both buckets must have room; the shared one is only charged when the client's has.
        let mut own = client.refusals;
        if own.take(refusal_rate(), REFUSALS_BURST, now).is_ok()
            && all_refusals
                .take(ALL_REFUSALS_PER_SECOND, ALL_REFUSALS_BURST, now)
                .is_ok()
        {
            client.refusals = own;
            return Some(std::mem::take(&mut client.unrecorded));
        }
        client.refusals.refill(refusal_rate(), REFUSALS_BURST, now);
        client.unrecorded = client.unrecorded.saturating_add(1);
        None
    }

    /// Whether `peer` may present credentials now (`limits.auth-failures`): or
    /// the whole seconds (at least 1) until its failed-authentication bucket has one again.
    pub(super) fn credentials_allowed(
        &self,
        peer: &ClientKey,
        limits: &ApiLimits,
    ) -> Result<(), u64> {
        self.credentials_allowed_at(peer, limits, Instant::now())
    }

    fn credentials_allowed_at(
        &self,
        peer: &ClientKey,
        limits: &ApiLimits,
        now: Instant,
    ) -> Result<(), u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(client) = state.clients.get_mut(peer) else {
            return Ok(());
        };
        let Some(failures) = &mut client.failures else {
            return Ok(());
        };
        failures.per_minute = f64::from(limits.auth_failures.max(1));
        failures.refill(now);
        if failures.bucket.tokens >= 1.0 {
            return Ok(());
        }
        let wait = (1.0 - failures.bucket.tokens) / (failures.per_minute / 60.0);
        Err(wait.ceil().max(1.0) as u64)
    }

    /// Charges `peer` one failed authentication. Two requests racing past
    /// [`credentials_allowed`](Self::credentials_allowed) may take the bucket below zero: the
    /// wait after them is longer, never shorter.
    pub(super) fn charge_auth_failure(&self, peer: &ClientKey, limits: &ApiLimits) {
        self.charge_auth_failure_at(peer, limits, Instant::now(), -1.0);
    }

    /// Gives back a failure charged to `peer` that its request did not turn into a refusal
    /// (the route does not authenticate: nothing was learnt from the guess).
    pub(super) fn refund_auth_failure(&self, peer: &ClientKey, limits: &ApiLimits) {
        self.charge_auth_failure_at(peer, limits, Instant::now(), 1.0);
    }

    fn charge_auth_failure_at(&self, peer: &ClientKey, limits: &ApiLimits, now: Instant, by: f64) {
        let per_minute = f64::from(limits.auth_failures.max(1));
        let (rate, burst) = (
            f64::from(limits.requests_per_second.max(1)),
            f64::from(limits.burst.max(1)),
        );
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let client = client_in(&mut state.clients, peer, rate, burst, now);
        client.seen = now;
        let failures = client.failures.get_or_insert(Failures {
            bucket: Bucket::full(per_minute, now),
            per_minute,
        });
        failures.per_minute = per_minute;
        failures.refill(now);
        failures.bucket.tokens = (failures.bucket.tokens + by).min(per_minute);
    }

    /// How many clients the table holds.
    #[cfg(test)]
    pub(super) fn clients(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.clients.len()
    }
}

impl State {
    fn client(&mut self, key: &ClientKey, rate: f64, burst: f64, now: Instant) -> &mut Client {
        client_in(&mut self.clients, key, rate, burst, now)
    }
}

/// `key`'s entry, made (full) if new; a full table makes room first.
fn client_in<'a>(
    clients: &'a mut HashMap<ClientKey, Client>,
    key: &ClientKey,
    rate: f64,
    burst: f64,
    now: Instant,
) -> &'a mut Client {
    if !clients.contains_key(key) && clients.len() >= MAX_CLIENTS {
        // Forgetting a client whose buckets are full again changes nothing.
        clients.retain(|_, c| {
            let (mut requests, mut refusals, mut failures) = (c.requests, c.refusals, c.failures);
            requests.refill(rate, burst, now);
            refusals.refill(refusal_rate(), REFUSALS_BURST, now);
            let failed = failures.as_mut().is_some_and(|f| {
                f.refill(now);
                f.bucket.tokens < f.per_minute
            });
            requests.tokens < burst
                || refusals.tokens < REFUSALS_BURST
                || c.unrecorded > 0
                || failed
        });
        while clients.len() >= MAX_CLIENTS {
            let Some(oldest) = clients
                .iter()
                .min_by_key(|(_, c)| c.seen)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            clients.remove(&oldest);
        }
    }
    clients.entry(key.clone()).or_insert_with(|| Client {
        requests: Bucket::full(burst, now),
        refusals: Bucket::full(REFUSALS_BURST, now),
        failures: None,
        unrecorded: 0,
        seen: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: usize) -> ClientKey {
        ClientKey::Peer(format!("10.0.{}.{}", n / 256, n % 256))
    }

    #[test]
    fn a_client_past_its_burst_waits_and_others_do_not() {
        let (limiter, now) = (Limiter::default(), Instant::now());
        let (a, b) = (peer(1), ClientKey::User("ada".into()));
        for _ in 0..3 {
            assert_eq!(limiter.admit_at(&a, 1, 3, now), Ok(()));
        }
        assert_eq!(limiter.admit_at(&a, 1, 3, now), Err(1));
        assert_eq!(limiter.admit_at(&b, 1, 3, now), Ok(()));
        // A second later the bucket has one request again.
        let later = now + Duration::from_secs(1);
        assert_eq!(limiter.admit_at(&a, 1, 3, later), Ok(()));
        assert_eq!(limiter.admit_at(&a, 1, 3, later), Err(1));
    }

    #[test]
    fn many_addresses_never_grow_the_table_past_its_bound() {
        let (limiter, now) = (Limiter::default(), Instant::now());
        // Every address drains its bucket, so none can be forgotten for free.
        for n in 0..MAX_CLIENTS + 500 {
            // A microsecond apart: no bucket refills to full while the table fills.
            let at = now + Duration::from_micros(n as u64);
            assert_eq!(limiter.admit_at(&peer(n), 1, 1, at), Ok(()));
            assert!(limiter.clients() <= MAX_CLIENTS);
        }
        assert_eq!(limiter.clients(), MAX_CLIENTS);
        // The newest are kept (the oldest went first): the last address is still limited.
        let end = now + Duration::from_micros(MAX_CLIENTS as u64 + 500);
        assert!(
            limiter
                .admit_at(&peer(MAX_CLIENTS + 499), 1, 1, end)
                .is_err()
        );
        // Clients whose buckets filled up again are forgotten first, and for free.
        let much_later = end + Duration::from_secs(3600);
        assert_eq!(limiter.admit_at(&peer(0), 1, 1, much_later), Ok(()));
        assert_eq!(limiter.clients(), 1);
    }

    #[test]
    fn a_client_refused_forever_is_recorded_a_bounded_number_of_times_and_told_the_rest() {
        let (limiter, now) = (Limiter::default(), Instant::now());
        let key = peer(7);
        let recorded: Vec<u64> = (0..1000)
            .filter_map(|_| limiter.record_refusal_at(&key, 100, 200, now))
            .collect();
        assert_eq!(recorded, vec![0; REFUSALS_BURST as usize]);
        // The next one recorded, once the bucket refills, says how many were not.
        let later = now + REFUSAL_EVERY;
        assert_eq!(limiter.record_refusal_at(&key, 100, 200, later), Some(990));
        assert_eq!(limiter.record_refusal_at(&key, 100, 200, later), None);
        // Many clients share one bound too.
        let others = (0..1000)
            .filter(|&n| {
                limiter
                    .record_refusal_at(&peer(1000 + n), 100, 200, later)
                    .is_some()
            })
            .count();
        // (The shared bucket refilled to its burst in those seconds, and gave one to `key`.)
        assert_eq!(others, ALL_REFUSALS_BURST as usize - 1);
    }

    #[test]
    fn an_address_out_of_failed_authentications_waits_until_its_bucket_refills() {
        let (limiter, now) = (Limiter::default(), Instant::now());
        let limits = ApiLimits {
            auth_failures: 3,
            ..ApiLimits::default()
        };
        let (a, b) = (peer(1), peer(2));
        for _ in 0..3 {
            assert_eq!(limiter.credentials_allowed_at(&a, &limits, now), Ok(()));
            limiter.charge_auth_failure_at(&a, &limits, now, -1.0);
        }
        // Spent: 3 a minute is one every 20 seconds. Another address is not held.
        assert_eq!(limiter.credentials_allowed_at(&a, &limits, now), Err(20));
        assert_eq!(limiter.credentials_allowed_at(&b, &limits, now), Ok(()));
        // A failure a route did not refuse is given back.
        limiter.charge_auth_failure_at(&a, &limits, now, 1.0);
        assert_eq!(limiter.credentials_allowed_at(&a, &limits, now), Ok(()));
        limiter.charge_auth_failure_at(&a, &limits, now, -1.0);
        // Racing charges take it below zero: the wait grows, it never wraps or shortens.
        limiter.charge_auth_failure_at(&a, &limits, now, -1.0);
        assert_eq!(limiter.credentials_allowed_at(&a, &limits, now), Err(40));
        let later = now + Duration::from_secs(39);
        assert_eq!(limiter.credentials_allowed_at(&a, &limits, later), Err(1));
        let refilled = now + Duration::from_secs(40);
        assert_eq!(
            limiter.credentials_allowed_at(&a, &limits, refilled),
            Ok(())
        );
    }

    #[test]
    fn an_address_still_throttled_is_not_forgotten_when_the_table_is_full() {
        let (limiter, now) = (Limiter::default(), Instant::now());
        let limits = ApiLimits {
            auth_failures: 1,
            ..ApiLimits::default()
        };
        let guesser = peer(0);
        limiter.charge_auth_failure_at(&guesser, &limits, now, -1.0);
        // Every other address's buckets are full again a second later: those are dropped
        // first, never the address whose failures have not refilled.
        for n in 1..MAX_CLIENTS + 10 {
            let at = now + Duration::from_secs(1) + Duration::from_micros(n as u64);
            limiter.charge_auth_failure_at(&peer(n), &limits, now, 0.0);
            assert!(limiter.clients() <= MAX_CLIENTS);
            assert!(
                limiter
                    .credentials_allowed_at(&guesser, &limits, at)
                    .is_err()
            );
        }
    }
}
