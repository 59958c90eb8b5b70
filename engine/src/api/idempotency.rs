//! Idempotent changes: with an `Idempotency-Key`, the answer to a change is stored in the
//! commit of the change itself and a retry gets it back without changing anything; the same
//! key on a different request is a 422. The answer replays for `limits.receipt-ttl` (24 h by
//! default); after that the key is free again (`service/sweep.rs` deletes the receipt).
//!
//! Only changes store a receipt. A refused request (400, 403, 404, 409, ...) changed nothing
//! and stores nothing, so a caller cannot grow the store by asking for what it may not do; its
//! retry is simply evaluated again, and may get another answer if the state changed meanwhile
//! (safe: the first attempt changed nothing, so a retry that now succeeds is its first effect).
//!
//! What "the same request" is, on every idempotent route: the route, its path parameters and
//! the body as parsed, normalised (`Strict::fingerprint`): whitespace, key order, escapes and
//! members set to `null` do not count; a different value does.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::App;
use super::error::ApiError;
use super::extract::Idempotency;
use super::views::ReleaseView;
use crate::core::Release;
use crate::service::{ServiceError, User};
use crate::store::Receipt;

/// What an idempotent request stored: enough to answer a retry exactly as the first time.
#[derive(Serialize, Deserialize)]
struct Stored {
    fingerprint: String,
    status: u16,
    body: Value,
}

fn stored_response(stored: Stored) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, Json(stored.body)).into_response();
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Runs a change that yields a release, answering with the release's view and `status`.
/// `request` says what the change is (its fingerprint); with a key, a retry of the same
/// request gets the first answer back.
pub(super) async fn mutate<F, Fut>(
    app: &App,
    user: &User,
    Idempotency(key): Idempotency,
    request: &str,
    status: StatusCode,
    change: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Option<Receipt>) -> Fut,
    Fut: Future<Output = Result<Release, ServiceError>>,
{
    let Some(key) = key else {
        let release = change(None).await?;
        return Ok((status, Json(ReleaseView::of(&release))).into_response());
    };
    let key = format!("{}\n{key}", user.name);
    let fingerprint = hex::encode(Sha256::digest(request.as_bytes()));
    let lock = {
        let mut keys = app.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.retain(|_, l| Arc::strong_count(l) > 1);
        keys.entry(key.clone()).or_default().clone()
    };
    let _held = lock.lock().await;
    let service = &app.service;
    if let Some(bytes) = service.receipt(&key)? {
        let stored: Stored =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(e.to_string()))?;
        if stored.fingerprint != fingerprint {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was used for a different request: use a new key",
            ));
        }
        return Ok(stored_response(stored));
    }
    let receipt_fingerprint = fingerprint.clone();
    let receipt = Receipt::expiring(key.clone(), move |release: &Release| {
        let stored = Stored {
            fingerprint: receipt_fingerprint,
            status: status.as_u16(),
            body: serde_json::to_value(ReleaseView::of(release)).unwrap_or(Value::Null),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    });
    let release = change(Some(receipt)).await?;
    Ok((status, Json(ReleaseView::of(&release))).into_response())
}
