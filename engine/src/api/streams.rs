//! Open event streams, bounded: at most `limits.streams-per-user` a user and `limits.streams`
//! in all (429 with `Retry-After` past either), each holding a [`Slot`] until it ends; each
//! ends after `limits.stream-max`, and a client resumes where it was with `Last-Event-ID`,
//! parsed here strictly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::App;
use super::error::ApiError;
use crate::service::User;

/// What a refused stream's `Retry-After` says, in seconds: streams end within
/// `limits.stream-max`, and clients come and go.
const RETRY_AFTER: u64 = 5;

/// The event streams open now: in all, and by user.
#[derive(Default)]
pub(super) struct OpenStreams(Mutex<Counts>);

#[derive(Default)]
struct Counts {
    total: u32,
    /// Only users with a stream open: at most one entry a configured user.
    by_user: HashMap<String, u32>,
}

impl OpenStreams {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One open stream's place under the caps, given back when the stream ends (the client
/// went, the stream ran its time, or the server stopped), and when it must end.
pub(super) struct Slot {
    app: Arc<App>,
    user: String,
    /// When the stream ends, after the event it is sending (`limits.stream-max`).
    pub(super) until: tokio::time::Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.app.streams.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_user.remove(&self.user);
            }
        }
    }
}

/// A stream refused under a cap: a 429 with `Retry-After`, its message naming the limit.
pub(super) struct Refused(String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, self.0).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER));
        response
    }
}

/// A slot for a new stream of `user`'s, or the refusal naming the limit.
pub(super) fn admit(app: &Arc<App>, user: &User) -> Result<Slot, Refused> {
    let limits = &app.service.config().limits;
    let mut counts = app.streams.counts();
    let mine = counts.by_user.get(&user.name).copied().unwrap_or(0);
    let refusal = if mine >= limits.streams_per_user {
        Some(format!(
            "{} has {mine} event streams open, the most one user may (limits.streams-per-user in sluice.toml): close one, or retry after one ends",
            user.name
        ))
    } else if counts.total >= limits.streams {
        Some(format!(
            "the server has {} event streams open, the most it allows (limits.streams in sluice.toml): retry in a few seconds",
            counts.total
        ))
    } else {
        None
    };
    if let Some(why) = refusal {
        return Err(Refused(why));
    }
    counts.total += 1;
    *counts.by_user.entry(user.name.clone()).or_default() += 1;
    Ok(Slot {
        app: app.clone(),
        user: user.name.clone(),
        until: tokio::time::Instant::now() + limits.stream_max,
    })
}

/// Where a reconnecting stream carries on: after the id in its `Last-Event-ID` (`what` the
/// id counts, for the message); `None` without the header. An id that is not a number, or
/// the last number there is (nothing can come after it), is a 400, as is the header twice.
pub(super) fn resume(headers: &HeaderMap, what: &str) -> Result<Option<u64>, ApiError> {
    let mut values = headers.get_all("last-event-id").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "Last-Event-ID is given more than once: send it once, with the id of the last event received",
        ));
    }
    let raw: String = String::from_utf8_lossy(value.as_bytes())
        .chars()
        .take(40)
        .collect();
    let shown = crate::types::text::escape(&raw);
    let id = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Last-Event-ID `{shown}` is not an event id: send the id of the last event received ({what}, a whole number from 0)"
            ))
        })?;
    id.checked_add(1).map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Last-Event-ID {id} is past the last {what} there can be: send the id of the last event received"
        ))
    })
}
