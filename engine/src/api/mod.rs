//! The HTTP API (`/api/v1`, JSON) — **the only module that speaks HTTP** (axum for the server,
//! hyper for the CLI's client in `client.rs`). Handlers are thin: authenticate, parse strictly,
//! call the service, map its errors onto statuses.
//!
//! Hardening, in the order a request meets it: a request id on every response; a URI over
//! 8 KiB (414), too many or too large headers (431), a `Content-Encoding` (415) or a path or
//! query that is not percent-encoded UTF-8 (400) is refused before it is routed; a body larger
//! than the limit is refused with 413 from its `Content-Length`, before it is read; a rate
//! limit on every route, per user or (without a valid token) per peer address, or 429 with
//! `Retry-After`; a bearer token (stored hashed) or 401; the role the endpoint needs or 403;
//! every 401 and 403 in the audit trail, with a bound (`limit`); a JSON body with an unknown field is 400 naming the field; an
//! `Idempotency-Key` on a POST replays the first result. Internal errors reach the log with the
//! request id; the response carries only the id. Every error answer is the JSON error body,
//! logged with the request id.
//!
//! This file holds the shared state (`App`), `router()` — the one place that lists every
//! route — and `serve`. The layers and extractors live in `guard`, `auth`, `extract` and
//! `idempotency`; errors in `error`; the handlers in `routes/`, a file per resource. Handlers
//! call `Service` only.

mod archive;
mod auth;
mod bounds;
pub mod client;
mod edges;
mod error;
mod extract;
mod guard;
mod idempotency;
mod limit;
mod openapi;
#[cfg(test)]
mod proptests;
mod routes;
mod sse;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_edges;
mod time;
mod views;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use crate::service::Service;
use routes::{approvals, audit, logs, ops, pipelines, releases};

pub use client::CLIENT_TIMEOUT;
pub use error::ApiError;
pub use openapi::document as openapi;
pub use views::ReleaseView;

/// The server's shared state.
struct App {
    service: Arc<Service>,
    /// The rate limit of every route, and the bound on audited refusals.
    limiter: limit::Limiter,
    /// One lock per idempotency key in use, so a retry racing its original waits for it.
    keys: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The router for a service: every route, in one place.
pub fn router(service: Arc<Service>) -> Router {
    let body_limit = service.config().limits.body_bytes;
    let app = Arc::new(App {
        service,
        limiter: limit::Limiter::default(),
        keys: Mutex::new(HashMap::new()),
    });
    let v1 = Router::new()
        .route("/pipelines", get(pipelines::list_pipelines))
        .route(
            "/pipelines/{name}",
            get(pipelines::get_pipeline).put(pipelines::put_pipeline),
        )
        .route(
            "/pipelines/{name}/validate",
            post(pipelines::validate_pipeline),
        )
        .route("/pipelines/{name}/releases", post(releases::create_release))
        .route("/releases", get(releases::list_releases))
        .route("/releases/{id}", get(releases::get_release))
        .route("/releases/{id}/abandon", post(releases::abandon))
        .route(
            "/releases/{id}/stages/{stage}/deploy",
            post(releases::deploy),
        )
        .route(
            "/releases/{id}/stages/{stage}/cancel",
            post(releases::cancel),
        )
        .route(
            "/releases/{id}/stages/{stage}/break-glass",
            post(releases::break_glass),
        )
        .route(
            "/releases/{id}/stages/{stage}/attempts/{attempt}/tasks/{task}/log",
            get(logs::task_log),
        )
        .route("/releases/{id}/logs", get(logs::release_logs))
        .route("/approvals", get(approvals::list_approvals))
        .route("/approvals/{id}", get(approvals::get_approval))
        .route("/approvals/{id}/approve", post(approvals::approve))
        .route("/approvals/{id}/reject", post(approvals::reject))
        .route("/approvals/{id}/reassign", post(approvals::reassign))
        .route("/audit", get(audit::audit))
        .route("/openapi.json", get(ops::openapi));
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(app.clone(), guard::guard))
        .with_state(app)
}

/// Serves the API until `shutdown` completes; then stops taking requests and lets those under
/// way finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address keys the rate limit of requests without a valid token, and says where
    // a refusal came from.
    let app = router(service).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
