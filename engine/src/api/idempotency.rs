//! Idempotent changes: with an `Idempotency-Key`, the answer to a change is stored (in the
//! commit of the change itself, or on its own for a refusal) and a retry gets it back without
//! changing anything; the same key on a different request is a 422.

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
    let receipt = Receipt::new(key.clone(), move |release: &Release| {
        let stored = Stored {
            fingerprint: receipt_fingerprint,
            status: status.as_u16(),
            body: serde_json::to_value(ReleaseView::of(release)).unwrap_or(Value::Null),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    });
    match change(Some(receipt)).await {
        Ok(release) => Ok((status, Json(ReleaseView::of(&release))).into_response()),
        Err(ServiceError::Internal(e)) => Err(ApiError::internal(e.detail())),
        Err(refused) => {
            // A refusal changed nothing; a retry gets the same refusal.
            let error = ApiError::from(refused);
            let stored = Stored {
                fingerprint,
                status: error.status.as_u16(),
                body: serde_json::to_value(&error.body).unwrap_or(Value::Null),
            };
            let bytes =
                serde_json::to_vec(&stored).map_err(|e| ApiError::internal(e.to_string()))?;
            service.put_receipt(&key, &bytes)?;
            Err(error)
        }
    }
}
