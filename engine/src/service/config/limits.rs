//! The `[limits]` table of `sluice.toml`: every key, its default, and the checks that name the
//! key and the file when a value is bad. The connection keys are read in `timeouts.rs`, the
//! event-stream keys in `streams.rs`.

use std::time::Duration;

use serde::Deserialize;

use super::{streams, timeouts::connection_keys};
use crate::types::{parse_bytes, parse_duration};

/// Request limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest request body, in bytes.
    pub body_bytes: usize,
    /// Requests per second per token, sustained.
    pub requests_per_second: u32,
    /// Requests a token may make at once above the sustained rate.
    pub burst: u32,
    /// How long SIGTERM waits for running tasks.
    pub shutdown_grace: Duration,
    /// Failed authentications per client address per minute before 429 (`auth-failures`).
    pub auth_failures: u32,
    /// `receipt-ttl`: how long an idempotent change's answer replays (then it is swept).
    pub receipt_ttl: Duration,
    /// `header-timeout`: how long a request's head may take to arrive, from its first byte.
    pub header_timeout: Duration,
    /// `idle-timeout`: how long a keep-alive connection may wait with no request in flight.
    pub idle_timeout: Duration,
    /// `connections`: open connections served at once; past them, a 503.
    pub connections: usize,
    /// `limits.streams`: event streams open at once, all users together.
    pub streams: u32,
    /// `limits.streams-per-user`: event streams one user may have open at once.
    pub streams_per_user: u32,
    /// `limits.stream-max`: how long an event stream stays open (clients resume after it).
    pub stream_max: Duration,
    /// `workspace-keep`: how long a failed deployment's workspace is kept for inspection
    /// (until the stage's next attempt, if sooner); `0s` removes it at the next sweep.
    pub workspace_keep: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            body_bytes: 1 << 20,
            requests_per_second: 100,
            burst: 200,
            shutdown_grace: Duration::from_secs(30),
            auth_failures: 20,
            receipt_ttl: Duration::from_secs(24 * 3600),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            connections: 1024,
            streams: 512,
            streams_per_user: 32,
            stream_max: Duration::from_secs(30 * 60),
            workspace_keep: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(in crate::service) struct RawLimits {
    body: Option<String>,
    requests_per_second: Option<u32>,
    burst: Option<u32>,
    shutdown_grace: Option<String>,
    plugin_size: Option<String>,
    compile_cache: Option<String>,
    auth_failures: Option<u32>,
    receipt_ttl: Option<String>,
    pub(in crate::service) header_timeout: Option<String>,
    pub(in crate::service) idle_timeout: Option<String>,
    pub(in crate::service) connections: Option<usize>,
    pub(super) streams: Option<u32>,
    pub(super) streams_per_user: Option<u32>,
    pub(super) stream_max: Option<String>,
    workspace_keep: Option<String>,
}

/// The plugin keys of `[limits]`.
pub(super) struct PluginLimits {
    /// `plugin-size`: the largest component file.
    pub(super) size: u64,
    /// `compile-cache`: the most bytes of compiled components kept.
    pub(super) cache: u64,
}

/// Reads `[limits]` of the file `shown`: the API's limits, `plugin-size` and `compile-cache`.
/// Each bad key is a problem (its default stands in while the rest is checked).
pub(super) fn read(
    limits: &RawLimits,
    shown: &std::path::Display<'_>,
    problems: &mut Vec<String>,
) -> (ApiLimits, PluginLimits) {
    let defaults = ApiLimits::default();
    let body_bytes = match limits.body.as_deref().map(parse_bytes) {
        None => defaults.body_bytes,
        Some(Ok(n)) => usize::try_from(n).unwrap_or(usize::MAX),
        Some(Err(e)) => {
            problems.push(format!("{shown}: limits.body: {e}"));
            defaults.body_bytes
        }
    };
    let shutdown_grace = match limits.shutdown_grace.as_deref().map(parse_duration) {
        None => defaults.shutdown_grace,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            problems.push(format!("{shown}: limits.shutdown-grace: {e}"));
            defaults.shutdown_grace
        }
    };
    let plugin_size = match limits.plugin_size.as_deref().map(parse_bytes) {
        None => crate::plugin::DEFAULT_PLUGIN_SIZE,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            problems.push(format!("{shown}: limits.plugin-size: {e}"));
            crate::plugin::DEFAULT_PLUGIN_SIZE
        }
    };
    let compile_cache = match limits.compile_cache.as_deref().map(parse_bytes) {
        None => crate::plugin::DEFAULT_CACHE_MAX_BYTES,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            problems.push(format!("{shown}: limits.compile-cache: {e}"));
            crate::plugin::DEFAULT_CACHE_MAX_BYTES
        }
    };
    let receipt_ttl = match limits.receipt_ttl.as_deref().map(parse_duration) {
        None => defaults.receipt_ttl,
        Some(Ok(d)) if d >= Duration::from_secs(1) => d,
        Some(Ok(_)) => {
            problems.push(format!("{shown}: limits.receipt-ttl must be at least 1s"));
            defaults.receipt_ttl
        }
        Some(Err(e)) => {
            problems.push(format!("{shown}: limits.receipt-ttl: {e}"));
            defaults.receipt_ttl
        }
    };
    let workspace_keep = match limits.workspace_keep.as_deref().map(parse_duration) {
        None => defaults.workspace_keep,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            problems.push(format!("{shown}: limits.workspace-keep: {e}"));
            defaults.workspace_keep
        }
    };
    let (header_timeout, idle_timeout, connections) = connection_keys(problems, shown, limits);
    let requests_per_second = limits
        .requests_per_second
        .unwrap_or(defaults.requests_per_second);
    if requests_per_second == 0 {
        problems.push(format!(
            "{shown}: limits.requests-per-second must be at least 1"
        ));
    }
    let auth_failures = limits.auth_failures.unwrap_or(defaults.auth_failures);
    if auth_failures == 0 {
        problems.push(format!("{shown}: limits.auth-failures must be at least 1"));
    }
    let streams = streams::limits(limits, &defaults, shown, problems);
    let limits = ApiLimits {
        body_bytes,
        requests_per_second,
        burst: limits.burst.unwrap_or(defaults.burst).max(1),
        shutdown_grace,
        auth_failures,
        receipt_ttl,
        header_timeout,
        idle_timeout,
        connections,
        streams: streams.streams,
        streams_per_user: streams.streams_per_user,
        stream_max: streams.stream_max,
        workspace_keep,
    };
    let plugins = PluginLimits {
        size: plugin_size,
        cache: compile_cache,
    };
    (limits, plugins)
}
