//! The HTTP API (`/api/v1`, JSON) — **the only module that speaks HTTP** (axum for the server,
//! hyper for the CLI's client in `client.rs`). Handlers are thin: authenticate, parse strictly,
//! call the service, map its errors onto statuses.
//!
//! Hardening, in the order a request meets it: a request id on every response; a body larger
//! than the limit is refused with 413 from its `Content-Length`, before it is read; a bearer
//! token (stored hashed) or 401; a per-token rate limit or 429 with `Retry-After`; the role the
//! endpoint needs or 403; a JSON body with an unknown field is 400 naming the field; an
//! `Idempotency-Key` on a POST replays the first result. Internal errors reach the log with the
//! request id; the response carries only the id.

mod archive;
pub mod client;
mod openapi;
mod sse;
mod views;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::core::{ApprovalState, Authority, Event, Release, ReleaseState};
use crate::scheduler::CreateOptions;
use crate::service::{
    ApprovalView, DecisionRequest, Role, Service, ServiceError, User, hash_token,
};
use crate::store::{LogKey, Receipt};

pub use openapi::document as openapi;
use openapi::{
    ApprovalPath, BadRequest, Conflict, Forbidden, IdempotencyKey, Invalid, NotFound, PipelinePath,
    ReleasePath, ServerEvent, StagePath, TaskPath, TooLarge, Unauthenticated,
};
pub use views::ReleaseView;
use views::{
    ApprovalList, AuditList, ErrorBody, PipelineDetail, PipelineList, PipelineSaved,
    PipelineSummary, PipelineVersionInfo, ReleaseList, ReleaseSummary, Validated,
};

/// The server's shared state.
struct App {
    service: Arc<Service>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// One lock per idempotency key in use, so a retry racing its original waits for it.
    keys: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The router for a service.
pub fn router(service: Arc<Service>) -> Router {
    let body_limit = service.config().limits.body_bytes;
    let app = Arc::new(App {
        service,
        buckets: Mutex::new(HashMap::new()),
        keys: Mutex::new(HashMap::new()),
    });
    let v1 = Router::new()
        .route("/pipelines", get(list_pipelines))
        .route("/pipelines/{name}", get(get_pipeline).put(put_pipeline))
        .route("/pipelines/{name}/validate", post(validate_pipeline))
        .route("/pipelines/{name}/releases", post(create_release))
        .route("/releases", get(list_releases))
        .route("/releases/{id}", get(get_release))
        .route("/releases/{id}/abandon", post(abandon))
        .route("/releases/{id}/stages/{stage}/deploy", post(deploy))
        .route("/releases/{id}/stages/{stage}/cancel", post(cancel))
        .route(
            "/releases/{id}/stages/{stage}/break-glass",
            post(break_glass),
        )
        .route(
            "/releases/{id}/stages/{stage}/attempts/{attempt}/tasks/{task}/log",
            get(task_log),
        )
        .route("/releases/{id}/logs", get(release_logs))
        .route("/approvals", get(list_approvals))
        .route("/approvals/{id}", get(get_approval))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/reject", post(reject))
        .route("/approvals/{id}/reassign", post(reassign))
        .route("/audit", get(audit))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }));
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

// ---------------------------------------------------------------------------------------------
// Errors and request ids

/// An error response: `{"error": "...", ...}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    /// For 500s: the detail, logged with the request id by `guard`, never sent.
    internal: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: message.into(),
                request_id: None,
                diagnostics: None,
                approval: None,
            },
            internal: None,
        }
    }

    fn internal(detail: impl Into<String>) -> Self {
        Self {
            internal: Some(detail.into()),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, m),
            ServiceError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, m),
            ServiceError::Conflict(m) => Self::new(StatusCode::CONFLICT, m),
            ServiceError::Invalid(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            ServiceError::Pipeline(p) => {
                let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "the pipeline is invalid");
                e.body.diagnostics = Some(p.diagnostics.iter().map(ToString::to_string).collect());
                e
            }
            ServiceError::Internal(e) => Self::internal(e.detail()),
        }
    }
}

/// The detail of an internal error, handed from the response to `guard`.
#[derive(Clone)]
struct InternalDetail(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(detail) = self.internal {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        response
    }
}

/// The first layer: a request id on every response, 413 for a declared body over the limit,
/// and internal errors logged with the id (the body carries only the id).
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
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

// ---------------------------------------------------------------------------------------------
// Authentication, roles, rate limits

/// The authenticated user of a request.
struct Auth(User);

/// A token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let unauthorized = |why: &str| {
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "no credentials: send `Authorization: Bearer <token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let hash = hash_token(token);
        let user = app
            .service
            .user(&hash)
            .cloned()
            .ok_or_else(|| unauthorized("the token is not valid"))?;
        app.admit(&hash).map_err(|r| *r)?;
        Ok(Auth(user))
    }
}

impl App {
    /// Takes one request from the token's bucket, or answers 429.
    fn admit(&self, token: &str) -> Result<(), Box<Response>> {
        let limits = &self.service.config().limits;
        let (rate, burst) = (
            f64::from(limits.requests_per_second),
            f64::from(limits.burst),
        );
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let bucket = buckets.entry(token.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64;
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "rate limit: {} requests per second per token (limits.requests-per-second)",
                limits.requests_per_second
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        Err(Box::new(response))
    }
}

/// Path parameters, with a JSON 400 (like every other error) when one does not parse.
struct Path<T>(T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// A count from a query, checked against the range the API documents.
fn count(name: &str, value: i64, max: i64) -> Result<usize, ApiError> {
    if (0..=max).contains(&value) {
        Ok(value as usize)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name} must be between 0 and {max}: it is {value}"),
        ))
    }
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
}

fn require(user: &User, role: Role) -> Result<(), ApiError> {
    if user.has(role) {
        Ok(())
    } else {
        let role = format!("{role:?}").to_lowercase();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} does not have the {role} role this needs", user.name),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Strict bodies and idempotency

/// Parses a JSON body strictly: an unknown field is a 400 that names it. An empty body (or
/// `null`) is `{}`.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

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

/// Runs a change that yields a release, answering with the release's view and `status`. With
/// an `Idempotency-Key`, the answer is stored (in the commit of the change itself) and a retry
/// gets it back without changing anything; the same key on a different request is a 422.
async fn mutate<F, Fut>(
    app: &App,
    user: &User,
    headers: &HeaderMap,
    request: &str,
    status: StatusCode,
    change: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Option<Receipt>) -> Fut,
    Fut: Future<Output = Result<Release, ServiceError>>,
{
    let Some(key) = headers.get("idempotency-key") else {
        let release = change(None).await?;
        return Ok((status, Json(ReleaseView::of(&release))).into_response());
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| (1..=200).contains(&k.len()) && k.bytes().all(|b| (b' '..=b'~').contains(&b)))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 200 visible characters",
            )
        })?;
    let key = format!("{}\n{key}", user.name);
    let fingerprint = hex::encode(Sha256::digest(request.as_bytes()));
    let lock = {
        let mut keys = app.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.retain(|_, l| Arc::strong_count(l) > 1);
        keys.entry(key.clone()).or_default().clone()
    };
    let _held = lock.lock().await;
    let store = app.service.store();
    if let Some(bytes) = store
        .receipt(&key)
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
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
            store
                .put_receipt(&key, &bytes)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Err(error)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Health and metrics

async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.service.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let releases = app
        .service
        .store()
        .releases()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut by_state: HashMap<String, u64> = HashMap::new();
    let mut stages: HashMap<String, u64> = HashMap::new();
    for release in &releases {
        *by_state.entry(views::kebab(&release.state)).or_default() += 1;
        for stage in &release.stages {
            *stages.entry(views::kebab(&stage.state())).or_default() += 1;
        }
    }
    let mut out = String::new();
    out.push_str("# HELP sluice_releases Releases by state.\n# TYPE sluice_releases gauge\n");
    let mut by_state: Vec<_> = by_state.into_iter().collect();
    by_state.sort();
    for (state, n) in by_state {
        out.push_str(&format!("sluice_releases{{state=\"{state}\"}} {n}\n"));
    }
    out.push_str(
        "# HELP sluice_deployments Stage deployments (latest attempt) by state.\n# TYPE sluice_deployments gauge\n",
    );
    let queued = stages.get("queued").copied().unwrap_or(0);
    let mut stages: Vec<_> = stages.into_iter().collect();
    stages.sort();
    for (state, n) in stages {
        out.push_str(&format!("sluice_deployments{{state=\"{state}\"}} {n}\n"));
    }
    out.push_str(&format!(
        "# HELP sluice_queue_depth Stage deployments waiting for their turn.\n# TYPE sluice_queue_depth gauge\nsluice_queue_depth {queued}\n"
    ));
    let durations = app.service.task_durations();
    out.push_str("# HELP sluice_task_duration_seconds Task run time, from running to ended.\n# TYPE sluice_task_duration_seconds histogram\n");
    for (bound, n) in crate::service::metrics::BUCKETS
        .iter()
        .zip(durations.buckets)
    {
        out.push_str(&format!(
            "sluice_task_duration_seconds_bucket{{le=\"{bound}\"}} {n}\n"
        ));
    }
    out.push_str(&format!(
        "sluice_task_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nsluice_task_duration_seconds_sum {sum}\nsluice_task_duration_seconds_count {count}\n",
        count = durations.count,
        sum = durations.sum
    ));
    out.push_str(&format!(
        "# HELP sluice_pending_approvals Approvals waiting for a decision.\n# TYPE sluice_pending_approvals gauge\nsluice_pending_approvals {}\n",
        app.service.pending_approvals().len()
    ));
    out.push_str(&format!(
        "# HELP sluice_releases_driving Releases the engine is driving now.\n# TYPE sluice_releases_driving gauge\nsluice_releases_driving {}\n",
        app.service.driving()
    ));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

// ---------------------------------------------------------------------------------------------
// Pipelines

/// List the pipelines the service serves.
#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines",
    responses((status = 200, body = PipelineList), Unauthenticated))]
async fn list_pipelines(State(app): State<Arc<App>>, Auth(_): Auth) -> Json<PipelineList> {
    let pipelines = app
        .service
        .pipelines()
        .into_iter()
        .map(|p| PipelineSummary {
            stages: p
                .loaded
                .plan
                .stages
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            artifacts: p
                .loaded
                .plan
                .artifacts
                .iter()
                .map(|a| a.alias.clone())
                .collect(),
            name: p.name,
            version: p.version,
        })
        .collect();
    Json(PipelineList { pipelines })
}

/// A pipeline: its TOML, its plan, and every stored version.
#[utoipa::path(get, path = "/api/v1/pipelines/{name}", tag = "pipelines", params(PipelinePath),
    responses((status = 200, body = PipelineDetail), Unauthenticated, NotFound))]
async fn get_pipeline(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    Path(name): Path<String>,
) -> Result<Json<PipelineDetail>, ApiError> {
    let pipeline = app.service.pipeline(&name)?;
    let versions = app
        .service
        .store()
        .pipeline_versions(&name)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(PipelineDetail {
        plan: serde_json::to_value(&pipeline.loaded.plan)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        name: pipeline.name,
        version: pipeline.version,
        source: pipeline.source,
        versions: versions
            .into_iter()
            .map(|v| PipelineVersionInfo {
                version: v.version,
                at: v.at,
                by: v.by,
            })
            .collect(),
    }))
}

fn toml_body(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be TOML text (UTF-8)",
        )
    })
}

/// Replace a pipeline (admins): the TOML is validated, stored as the next version and written
/// to its file. Releases already created keep their snapshot.
#[utoipa::path(put, path = "/api/v1/pipelines/{name}", tag = "pipelines", params(PipelinePath),
    request_body(content = String, content_type = "text/plain", description = "The pipeline's TOML"),
    responses((status = 200, body = PipelineSaved), BadRequest, Unauthenticated, Forbidden, Invalid, TooLarge))]
async fn put_pipeline(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<PipelineSaved>, ApiError> {
    require(&user, Role::Admin)?;
    let pipeline = app
        .service
        .put_pipeline(&name, toml_body(&body)?, &user.name)?;
    Ok(Json(PipelineSaved {
        name: pipeline.name,
        version: pipeline.version,
    }))
}

/// Check a pipeline's TOML without saving it (releasers).
#[utoipa::path(post, path = "/api/v1/pipelines/{name}/validate", tag = "pipelines", params(PipelinePath),
    request_body(content = String, content_type = "text/plain", description = "The pipeline's TOML"),
    responses((status = 200, body = Validated), BadRequest, Unauthenticated, Forbidden, Invalid, TooLarge))]
async fn validate_pipeline(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Validated>, ApiError> {
    require(&user, Role::Releaser)?;
    let loaded = app.service.validate_pipeline(&name, toml_body(&body)?)?;
    Ok(Json(Validated {
        valid: true,
        name: loaded.plan.name,
    }))
}

// ---------------------------------------------------------------------------------------------
// Releases and deployments

/// A new release: artifact versions (latest, or the pipeline's selector, unless given),
/// variables settable at release time, a description.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRelease {
    /// Artifact alias -> version id.
    #[serde(default)]
    artifacts: std::collections::BTreeMap<String, String>,
    /// Variable name -> value.
    #[serde(default)]
    variables: std::collections::BTreeMap<String, String>,
    description: Option<String>,
}

/// Create a release of a pipeline (releasers); its first stages start at once.
#[utoipa::path(post, path = "/api/v1/pipelines/{name}/releases", tag = "releases",
    params(PipelinePath, IdempotencyKey), request_body = CreateRelease,
    responses((status = 201, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Invalid, TooLarge))]
async fn create_release(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require(&user, Role::Releaser)?;
    let request: CreateRelease = parse(&body)?;
    let options = CreateOptions {
        artifacts: request.artifacts,
        variables: request.variables.into_iter().collect(),
        creator: user.name.clone(),
        description: request.description,
    };
    let fingerprint = format!("create {name} {}", String::from_utf8_lossy(&body));
    let service = &app.service;
    mutate(
        &app,
        &user,
        &headers,
        &fingerprint,
        StatusCode::CREATED,
        |receipt| service.create_release(&name, options, receipt),
    )
    .await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListReleases {
    /// Only this pipeline's releases.
    pipeline: Option<String>,
    /// Only releases in this state.
    state: Option<ReleaseState>,
    /// Page size.
    #[serde(default = "default_limit")]
    #[param(minimum = 0, maximum = 500)]
    limit: i64,
    /// Releases to skip.
    #[serde(default)]
    #[param(minimum = 0)]
    offset: i64,
}

fn default_limit() -> i64 {
    50
}

/// List releases, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases", params(ListReleases),
    responses((status = 200, body = ReleaseList<'static>), BadRequest, Unauthenticated))]
async fn list_releases(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    query: Result<Query<ListReleases>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let (limit, offset) = (
        count("limit", query.limit, 500)?,
        count("offset", query.offset, i64::MAX)?,
    );
    let state = query.state;
    let mut releases = app
        .service
        .store()
        .releases()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    releases.retain(|r| {
        query.pipeline.as_ref().is_none_or(|p| &r.pipeline == p)
            && state.is_none_or(|s| r.state == s)
    });
    // Newest first.
    releases.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(b.number.cmp(&a.number))
    });
    let page = ReleaseList {
        releases: releases
            .iter()
            .skip(offset)
            .take(limit)
            .map(ReleaseSummary::of)
            .collect(),
        total: releases.len(),
        offset,
    };
    Ok(Json(page).into_response())
}

/// A release: its stages with their attempts, tasks and approvals, its artifact versions and
/// plugin digests.
#[utoipa::path(get, path = "/api/v1/releases/{id}", tag = "releases", params(ReleasePath),
    responses((status = 200, body = ReleaseView<'static>), Unauthenticated, NotFound))]
async fn get_release(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let release = app.service.release(&id)?;
    Ok(Json(ReleaseView::of(&release)).into_response())
}

/// The body of a deploy, cancel or abandon: nothing (or `{}`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NoFields {}

/// A deploy: now, or `at` a time.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    /// Deploy at this time instead of now: RFC 3339 or Unix milliseconds. Nothing is asked
    /// (approvals, a queue turn) before then.
    at: Option<DeferUntil>,
}

async fn release_event(
    app: &App,
    (user, role): (User, Role),
    headers: HeaderMap,
    release: String,
    event: Event,
) -> Result<Response, ApiError> {
    require(&user, role)?;
    let fingerprint = format!("{release} {event:?}");
    let service = &app.service;
    mutate(
        app,
        &user,
        &headers,
        &fingerprint,
        StatusCode::OK,
        |receipt| service.submit(&release, event, &user, receipt),
    )
    .await
}

/// Abandon a release (releasers): nothing more of it deploys.
#[utoipa::path(post, path = "/api/v1/releases/{id}/abandon", tag = "releases",
    params(ReleasePath, IdempotencyKey), request_body(content = Option<NoFields>),
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
async fn abandon(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let NoFields {} = parse(&body)?;
    release_event(&app, (user, Role::Releaser), headers, id, Event::Abandon).await
}

/// Deploy (or redeploy, as a new attempt) a stage by hand (releasers), now or at a time.
#[utoipa::path(post, path = "/api/v1/releases/{id}/stages/{stage}/deploy", tag = "deployments",
    params(StagePath, IdempotencyKey), request_body(content = Option<DeployRequest>),
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
async fn deploy(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Path((id, stage)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: DeployRequest = parse(&body)?;
    let event = match request.at.as_ref().map(DeferUntil::millis).transpose()? {
        Some(at) => Event::Schedule { stage, at },
        None => Event::Deploy { stage },
    };
    release_event(&app, (user, Role::Releaser), headers, id, event).await
}

/// Cancel a stage's deployment (releasers): running tasks are stopped.
#[utoipa::path(post, path = "/api/v1/releases/{id}/stages/{stage}/cancel", tag = "deployments",
    params(StagePath, IdempotencyKey), request_body(content = Option<NoFields>),
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
async fn cancel(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Path((id, stage)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let NoFields {} = parse(&body)?;
    release_event(
        &app,
        (user, Role::Releaser),
        headers,
        id,
        Event::Cancel { stage },
    )
    .await
}

/// Breaking a freeze: why it cannot wait.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BreakGlassRequest {
    /// Why this deployment goes inside a freeze window (required; audited).
    #[schema(min_length = 1)]
    justification: String,
}

/// Let a deployment that waits out a freeze window go now (admins; audited, with the
/// justification).
#[utoipa::path(post, path = "/api/v1/releases/{id}/stages/{stage}/break-glass", tag = "deployments",
    params(StagePath, IdempotencyKey), request_body = BreakGlassRequest,
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
async fn break_glass(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Path((id, stage)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require(&user, Role::Admin)?;
    let BreakGlassRequest { justification } = parse(&body)?;
    if justification.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "`justification` is empty: say why this deployment cannot wait for the freeze to end",
        ));
    }
    let event = Event::BreakGlass {
        stage,
        by: user.name.clone(),
        justification,
    };
    release_event(&app, (user, Role::Admin), headers, id, event).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FollowQuery {
    /// Stream as server-sent events (`line` per line, then `end`) until the task ends.
    #[serde(default)]
    follow: bool,
}

/// One task's log as text; with `follow=true`, live as server-sent events.
#[utoipa::path(get, path = "/api/v1/releases/{id}/stages/{stage}/attempts/{attempt}/tasks/{task}/log",
    tag = "logs", params(TaskPath, FollowQuery),
    responses(
        (status = 200, description = "The log, a line per line", content(
            (String = "text/plain"),
            (ServerEvent = "text/event-stream"),
        )),
        BadRequest, Unauthenticated, NotFound))]
async fn task_log(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    Path((id, stage, attempt, task)): Path<(String, String, u32, String)>,
    query: Result<Query<FollowQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let key = LogKey {
        release: &id,
        stage: &stage,
        attempt,
        task: &task,
    };
    if query.follow {
        let follow = app.service.follow_log(&key)?;
        return Ok(sse::log(app, follow));
    }
    let lines = app
        .service
        .store()
        .log(&key)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no log for task `{task}` of {id} stage `{stage}` attempt {attempt} (yet): add ?follow=true to wait for it"
                ),
            )
        })?;
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Every stored task log of a release, as a `.tar.gz` of `RELEASE/STAGE/ATTEMPT/TASK.log`
/// files.
#[utoipa::path(get, path = "/api/v1/releases/{id}/logs", tag = "logs", params(ReleasePath),
    responses(
        (status = 200, description = "A .tar.gz archive", content_type = "application/gzip", body = Vec<u8>),
        Unauthenticated, NotFound))]
async fn release_logs(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.service.release(&id)?;
    let logs = app
        .service
        .store()
        .logs_of(&id)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let archive = archive::logs(&id, &logs).map_err(|e| ApiError::internal(e.to_string()))?;
    let disposition = format!("attachment; filename=\"{id}-logs.tar.gz\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        archive,
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Approvals

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListApprovals {
    /// Approvals in this state (`all`: any).
    #[serde(default)]
    #[param(inline)]
    status: StatusFilter,
    /// `me`, or a user or `group:NAME` listed as approver.
    approver: Option<String>,
    /// Only this release's approvals.
    release: Option<String>,
    /// Only this stage's.
    stage: Option<String>,
}

/// Which approvals to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
enum StatusFilter {
    #[default]
    Pending,
    Approved,
    Rejected,
    Reassigned,
    Canceled,
    Skipped,
    Expired,
    All,
}

impl StatusFilter {
    /// The state it selects; `None` for all.
    fn state(self) -> Option<ApprovalState> {
        Some(match self {
            Self::Pending => ApprovalState::Pending,
            Self::Approved => ApprovalState::Approved,
            Self::Rejected => ApprovalState::Rejected,
            Self::Reassigned => ApprovalState::Reassigned,
            Self::Canceled => ApprovalState::Canceled,
            Self::Skipped => ApprovalState::Skipped,
            Self::Expired => ApprovalState::Expired,
            Self::All => return None,
        })
    }
}

/// List approvals: pending ones by default; `approver=me` for those the caller may decide.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals", params(ListApprovals),
    responses((status = 200, body = ApprovalList), BadRequest, Unauthenticated))]
async fn list_approvals(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    query: Result<Query<ListApprovals>, QueryRejection>,
) -> Result<Json<ApprovalList>, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let status = query.status.state();
    let mut approvals = if status == Some(ApprovalState::Pending) {
        app.service.pending_approvals()
    } else {
        let releases = app
            .service
            .store()
            .releases()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        releases
            .iter()
            .flat_map(crate::service::approvals_of)
            .filter(|a| status.is_none_or(|s| a.approval.state == s))
            .collect()
    };
    approvals.retain(|a| {
        query.release.as_ref().is_none_or(|r| &a.release == r)
            && query.stage.as_ref().is_none_or(|s| &a.stage == s)
            && match query.approver.as_deref() {
                None => true,
                Some("me") => a.lists(&user),
                Some(name) => a.approval.approvers.iter().any(|x| x == name),
            }
    });
    Ok(Json(ApprovalList { approvals }))
}

/// One approval, with its decisions.
#[utoipa::path(get, path = "/api/v1/approvals/{id}", tag = "approvals", params(ApprovalPath),
    responses((status = 200, body = ApprovalView), Unauthenticated, NotFound))]
async fn get_approval(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    Path(id): Path<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    Ok(Json(app.service.approval(&id)?))
}

/// A decision on an approval.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Decide {
    /// Why; kept in the audit trail.
    #[serde(default)]
    comment: String,
    /// Decide for every approver (admins).
    #[serde(default, rename = "override")]
    override_approvers: bool,
    /// Approve now, deploy at this time: RFC 3339 (`2026-11-24T06:00:00+01:00`) or Unix
    /// milliseconds.
    defer_until: Option<DeferUntil>,
}

/// A time to deploy at.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum DeferUntil {
    /// Unix milliseconds.
    Millis(u64),
    /// RFC 3339, with an offset or `Z`.
    Time(String),
}

impl DeferUntil {
    /// Unix milliseconds.
    fn millis(&self) -> Result<u64, ApiError> {
        let time = match self {
            Self::Millis(ms) => return Ok(*ms),
            Self::Time(text) => text,
        };
        let bad = |why: String| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "defer-until `{time}`: {why}; give an RFC 3339 time such as 2026-11-24T06:00:00Z, or Unix milliseconds"
                ),
            )
        };
        let at: jiff::Timestamp = time.parse().map_err(|e: jiff::Error| bad(e.to_string()))?;
        u64::try_from(at.as_millisecond()).map_err(|_| bad("it is before 1970".into()))
    }
}

async fn decide(
    app: &App,
    user: User,
    id: String,
    headers: HeaderMap,
    body: Bytes,
    approve: bool,
) -> Result<Response, ApiError> {
    let request: Decide = parse(&body)?;
    let defer_until = request
        .defer_until
        .as_ref()
        .map(DeferUntil::millis)
        .transpose()?;
    if !approve && defer_until.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "defer-until applies to approvals only: remove it from the rejection",
        ));
    }
    let verb = if approve { "approve" } else { "reject" };
    let fingerprint = format!("{verb} {id} {}", String::from_utf8_lossy(&body));
    let decision = DecisionRequest {
        approve,
        comment: request.comment,
        authority: approval_authority(&user, request.override_approvers)?,
        defer_until,
    };
    let service = &app.service;
    let result = mutate(
        app,
        &user,
        &headers,
        &fingerprint,
        StatusCode::OK,
        |receipt| service.decide(&id, &user, decision, receipt),
    )
    .await;
    with_approval_state(app, &id, result)
}

/// A 409 on an approval says what state it is in now.
fn with_approval_state(
    app: &App,
    id: &str,
    result: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    result.map_err(|e| {
        if e.status != StatusCode::CONFLICT {
            return e;
        }
        let mut e = e;
        e.body.approval = app.service.approval(id).ok().map(Box::new);
        e
    })
}

/// Approve (approvers listed on it, directly or through a group; admins with `override`).
/// With `defer-until`, the deployment waits until then.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", tag = "approvals",
    params(ApprovalPath, IdempotencyKey), request_body(content = Option<Decide>),
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
async fn approve(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(&app, user, id, headers, body, true).await
}

/// Reject: the deployment does not go ahead.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/reject", tag = "approvals",
    params(ApprovalPath, IdempotencyKey), request_body(content = Option<Decide>),
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
async fn reject(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(&app, user, id, headers, body, false).await
}

/// Hand an approval to someone else.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Reassign {
    /// A user, or `group:NAME`.
    to: String,
    #[serde(default)]
    comment: String,
    /// Reassign without being an approver on it (admins).
    #[serde(default, rename = "override")]
    override_approvers: bool,
}

/// Reassign an approval to another user or group.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/reassign", tag = "approvals",
    params(ApprovalPath, IdempotencyKey), request_body = Reassign,
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
async fn reassign(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: Reassign = parse(&body)?;
    let authority = approval_authority(&user, request.override_approvers)?;
    let fingerprint = format!("reassign {id} {}", String::from_utf8_lossy(&body));
    let service = &app.service;
    let result = mutate(
        &app,
        &user,
        &headers,
        &fingerprint,
        StatusCode::OK,
        |receipt| service.reassign(&id, &user, request.to, request.comment, authority, receipt),
    )
    .await;
    with_approval_state(&app, &id, result)
}

/// The authority a decision or reassignment is made on, from the user's coarse roles: an
/// approver's own, or with `override` an admin's for every approver. Whether this user may
/// decide this approval (listed, not the release's creator, in turn) is the core's rule.
fn approval_authority(user: &User, override_approvers: bool) -> Result<Authority, ApiError> {
    let forbidden = |why: String| ApiError::new(StatusCode::FORBIDDEN, why);
    match (override_approvers, user.has(Role::Admin)) {
        (true, true) => Ok(Authority::Override),
        (true, false) => Err(forbidden(format!(
            "{} is not an admin: only admins may override approvers",
            user.name
        ))),
        (false, _) if user.has(Role::Approver) => Ok(Authority::Approver),
        (false, _) => Err(forbidden(format!(
            "{} does not have the approver role",
            user.name
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Audit

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only this release's entries.
    release: Option<String>,
    /// Entries after this sequence number (oldest first); without it, the latest `limit`.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// How many entries.
    #[serde(default = "default_limit")]
    #[param(minimum = 0, maximum = 10000)]
    limit: i64,
    /// Stream as server-sent events (`audit`, id = seq): the entries asked for, then each new
    /// one as it commits. A reconnecting client sends `Last-Event-ID`.
    #[serde(default)]
    follow: bool,
}

/// The audit trail: every state change and decision, with actor, time and release revision.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses(
        (status = 200, description = "Entries, oldest first", content(
            (AuditList = "application/json"),
            (ServerEvent = "text/event-stream"),
        )),
        BadRequest, Unauthenticated))]
async fn audit(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(bad_query)?;
    let store = app.service.store();
    let limit = count("limit", query.limit, 10_000)?;
    let after = match query.after {
        Some(after) => Some(count("after", after, i64::MAX)? as u64),
        None => None,
    };
    // A reconnecting event stream says where it was.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let after = resume.or(after);
    let len = *store.audit_len().borrow();
    let mut entries = store
        .audit_from(after.map_or(0, |seq| seq + 1), usize::MAX)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    // What a client reads next (pending approvals, say) includes what these entries say.
    app.service.sync_views();
    entries.retain(|e| query.release.as_ref().is_none_or(|r| &e.release == r));
    if after.is_some() {
        entries.truncate(limit);
    } else {
        entries.drain(..entries.len().saturating_sub(limit));
    }
    if query.follow {
        let next = entries.last().map_or(len, |e| e.seq + 1);
        return Ok(sse::audit(app.clone(), entries, next, query.release));
    }
    Ok(Json(AuditList { entries }).into_response())
}

/// Serves the API until `shutdown` completes; then stops taking requests and lets those under
/// way finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service))
        .with_graceful_shutdown(shutdown)
        .await
}

/// How long a client waits for the server, by default.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
