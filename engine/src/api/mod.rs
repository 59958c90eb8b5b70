//! The HTTP API (`/api/v1`, JSON) — **the only module that speaks HTTP** (axum for the server,
//! hyper for the CLI's client in `client.rs`). Handlers are thin: authenticate, parse strictly,
//! call the service, map its errors onto statuses.
//!
//! Hardening, in the order a request meets it: its connection's limits (`conn`: the header
//! and idle timeouts, the connection cap's 503); a request id on every response; a URI over
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
//! **Every route checks in one order**: authenticate (401; 400 for two `Authorization`
//! headers; 429 while the address's failed authentications are spent), then the role the route
//! needs, from the extractor that comes first in the handler's signature (`Auth`, `Releaser`,
//! `Approver`, `Admin`: 403), then parse and validate the path, query and body (`Strict`, last:
//! 400), then look the target up (404) and let the service and the core decide (403 for a
//! rule about this target, such as an approver not listed on it; 409, 422). So a caller without
//! the role gets the same 403, word for word, whether the target exists or not and whatever the
//! body; a caller with it may learn that a target exists — which every role may read anyway
//! (viewers read every pipeline, release, approval and the audit trail) — and a malformed body
//! is a 400 before anything is looked up. A check that needs the parsed body (an `override`
//! needs an admin) is made right after parsing.
//!
//! This file holds the shared state (`App`), `router()` — the one place that lists every
//! route — and `serve`. The layers and extractors live in `guard`, `auth`, `extract` and
//! `idempotency`; errors in `error`; the handlers in `routes/`, a file per resource. Handlers
//! call `Service` only.

mod activity;
mod archive;
mod auth;
mod bounds;
pub mod client;
mod conn;
mod edges;
mod error;
mod extract;
mod guard;
mod idempotency;
mod limit;
mod openapi;
pub mod outbound;
#[cfg(test)]
mod proptests;
mod routes;
mod sse;
mod streams;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_auth;
#[cfg(test)]
mod tests_edges;
#[cfg(test)]
mod tests_order;
#[cfg(test)]
mod tests_streams;
mod time;
pub mod tls;
mod views;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use crate::service::Service;
use routes::{agents, approvals, audit, logs, ops, pipelines, quarantine, releases};

pub use client::CLIENT_TIMEOUT;
pub use conn::REFUSING;
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
    /// The event streams open, under `limits.streams` and `limits.streams-per-user`.
    streams: streams::OpenStreams,
}

/// The router for a service: every route, in one place.
pub fn router(service: Arc<Service>) -> Router {
    let body_limit = service.config().limits.body_bytes;
    let app = Arc::new(App {
        service,
        limiter: limit::Limiter::default(),
        keys: Mutex::new(HashMap::new()),
        streams: streams::OpenStreams::default(),
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
        .route("/agents", get(agents::list))
        .route("/agents/{name}/disable", post(agents::disable))
        .route("/agents/{name}/enable", post(agents::enable))
        .route("/agent/jobs/next", post(agents::next))
        .route("/agent/jobs/{id}/step", post(agents::step))
        .route("/agent/jobs/{id}/prepared", post(agents::prepared))
        .route("/agent/jobs/{id}/tasks/{index}", post(agents::task))
        .route("/agent/jobs/{id}/gates", post(agents::gates))
        .route("/agent/jobs/{id}/tasks/{index}/log", post(agents::log))
        .route("/agent/renew", post(agents::renew))
        .route("/agent/plugins/{digest}", get(agents::plugin))
        .route("/quarantine", get(quarantine::quarantine))
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
/// way finish. Connections are served within `limits.header-timeout`, `limits.idle-timeout`
/// and `limits.connections` (see `conn`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls(listener, service, None, shutdown).await
}

/// As [`serve`], over TLS when `tls` is given.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    tls: Option<tls::ServerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = &service.config().limits;
    let limits = conn::ConnLimits {
        header: limits.header_timeout,
        idle: limits.idle_timeout,
        connections: limits.connections,
        grace: limits.shutdown_grace,
    };
    conn::serve(listener, router(service), limits, tls, shutdown).await
}
