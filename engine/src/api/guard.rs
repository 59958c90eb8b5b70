//! The first layer every request meets: a request id on every response, 503 while the server
//! shuts down, 413 for a declared body over the limit (and a JSON 413 for one found over it
//! while read), and internal errors logged with the id (the body carries only the id).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;
use super::error::{ApiError, InternalDetail};

/// The middleware itself (`middleware::from_fn_with_state`).
pub(super) async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = format!(
        "{:x}-{}",
        crate::store::now_ms(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    let limit = app.service.config().limits.body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut response = match declared {
        // Between SIGTERM and the listener closing, a request that got in is refused.
        _ if app.service.is_stopping() => {
            let mut refused = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down: retry once it (or its replacement) is back",
            )
            .into_response();
            refused.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            refused
        }
        Some(n) if n > limit => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is {n} bytes; the limit is {limit} (limits.body in sluice.toml)"
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    };
    if let Some(InternalDetail(detail)) = response.extensions_mut().remove::<InternalDetail>() {
        tracing::error!(request_id = %id, "internal error: {detail}");
        let mut error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        error.body.request_id = Some(id.clone());
        response = error.into_response();
    } else if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|t| t != "application/json")
    {
        response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is over the limit of {limit} bytes (limits.body in sluice.toml)"
            ),
        )
        .into_response();
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
