//! The operator's routes outside `/api/v1`: liveness, readiness, Prometheus metrics; and the
//! OpenAPI document and the JSON 404 for a route that does not exist.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::App;
use crate::api::error::ApiError;

/// `/healthz`: the process answers.
pub(in crate::api) async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz`: recovered, and the store commits.
pub(in crate::api) async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.service.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// `/metrics`, in the Prometheus text format.
pub(in crate::api) async fn metrics(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let text = app.service.metrics_text()?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `/api/v1/openapi.json`.
pub(in crate::api) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::api::openapi::document())
}

/// Any other route.
pub(in crate::api) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}
