//! The agent routes (`/api/v1/agent/...`, agent tokens only: a user token gets 403) — the job
//! protocol of `types::job` over HTTP — and `/api/v1/agents` for people: list (any user),
//! disable and enable (admins). Before the service recovered, the agent routes answer 503: a
//! job a restart gives back to its agent must be on the board before the agent asks.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::App;
use crate::api::auth::{Admin, AgentAuth, Auth};
use crate::api::error::ApiError;
use crate::api::extract::{Path, Query, Strict};
use crate::plugin::Digest;
use crate::service::agents::AgentView;
use crate::types::job::{
    Accepted, Fence, GatesReported, Hello, LogAck, LogBatch, PreparedReport, Renew, Renewed,
    TaskReported,
};

/// 503 until the service has recovered (and while it stops taking work).
fn ready(app: &App) -> Result<(), ApiError> {
    app.service.ready().map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not taking agent requests yet: {e}; retry"),
        )
    })
}

/// `POST /api/v1/agent/jobs/next`: a job, or 204 after `agents.poll`.
pub(in crate::api) async fn next(
    AgentAuth(token): AgentAuth,
    State(app): State<Arc<App>>,
    body: Strict<Hello>,
) -> Result<Response, ApiError> {
    ready(&app)?;
    match app.service.agents().next(&token, body.value).await? {
        Some(job) => Ok(Json(job).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /api/v1/agent/jobs/{id}/step`: the next step for the lease holder.
pub(in crate::api) async fn step(
    AgentAuth(token): AgentAuth,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Strict<Fence>,
) -> Result<Response, ApiError> {
    ready(&app)?;
    let step = app.service.agents().step(&token, &id, body.value).await?;
    Ok(Json(step).into_response())
}

/// `POST /api/v1/agent/jobs/{id}/prepared`.
pub(in crate::api) async fn prepared(
    AgentAuth(token): AgentAuth,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Strict<PreparedReport>,
) -> Result<Json<Accepted>, ApiError> {
    ready(&app)?;
    Ok(Json(
        app.service
            .agents()
            .prepared(&token, &id, body.value)
            .await?,
    ))
}

/// `POST /api/v1/agent/jobs/{id}/tasks/{index}/log`.
pub(in crate::api) async fn log(
    AgentAuth(token): AgentAuth,
    State(app): State<Arc<App>>,
    Path((id, index)): Path<(String, usize)>,
    body: Strict<LogBatch>,
) -> Result<Json<LogAck>, ApiError> {
    ready(&app)?;
    Ok(Json(
        app.service.agents().log(&token, &id, index, body.value)?,
    ))
}

/// `POST /api/v1/agent/jobs/{id}/tasks/{index}`: how the task ended.
pub(in crate::api) async fn task(
    AgentAuth(token): AgentAuth,
    State(app): State<Arc<App>>,
    Path((id, index)): Path<(String, usize)>,
    body: Strict<TaskReported>,
) -> Result<Json<Accepted>, ApiError> {
    ready(&app)?;
    let accepted = app
        .service
        .agents()
        .task(&token, &id, index, body.value)
        .await?;
    Ok(Json(accepted))
}

/// `POST /api/v1/agent/jobs/{id}/gates`: a gate job's results.
pub(in crate::api) async fn gates(
    AgentAuth(token): AgentAuth,
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Strict<GatesReported>,
) -> Result<Json<Accepted>, ApiError> {
    ready(&app)?;
    let accepted = app.service.agents().gates(&token, &id, body.value).await?;
    Ok(Json(accepted))
}

/// `POST /api/v1/agent/renew`.
pub(in crate::api) async fn renew(
    AgentAuth(token): AgentAuth,
    State(app): State<Arc<App>>,
    body: Strict<Renew>,
) -> Result<Json<Renewed>, ApiError> {
    ready(&app)?;
    Ok(Json(app.service.agents().renew(&token, body.value)?))
}

/// Who fetches a plugin.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct PluginQuery {
    agent: String,
}

/// `GET /api/v1/agent/plugins/{digest}?agent=NAME`: the bytes of a plugin a job the agent
/// holds runs, from the plugin store (verified as read).
pub(in crate::api) async fn plugin(
    AgentAuth(token): AgentAuth,
    State(app): State<Arc<App>>,
    Path(digest): Path<String>,
    Query(query): Query<PluginQuery>,
) -> Result<Response, ApiError> {
    ready(&app)?;
    let Some(parsed) = Digest::parse(&digest) else {
        return Err(ApiError::bad_request(format!(
            "`{}` is not a digest: write sha256:<64 hex digits>",
            crate::types::escape(&digest)
        )));
    };
    app.service
        .agents()
        .may_fetch(&token, &query.agent, &parsed.to_string())?;
    let host = app.service.host().clone();
    let bytes = tokio::task::spawn_blocking(move || host.kept_bytes(&parsed, &digest))
        .await
        .map_err(|e| ApiError::internal(format!("reading a plugin: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match bytes {
        Some(bytes) => Ok((
            [(header::CONTENT_TYPE, "application/wasm")],
            Body::from(bytes),
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the plugin store does not keep this plugin",
        )),
    }
}

/// `GET /api/v1/agents`: every agent heard from since the service started.
pub(in crate::api) async fn list(
    Auth(_): Auth,
    State(app): State<Arc<App>>,
) -> Json<Vec<AgentView>> {
    Json(app.service.agents().list())
}

/// `POST /api/v1/agents/{name}/disable`: it takes no new job (admins).
pub(in crate::api) async fn disable(
    Admin(_): Admin,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    Ok(Json(app.service.set_agent_disabled(&name, true)?))
}

/// `POST /api/v1/agents/{name}/enable` (admins).
pub(in crate::api) async fn enable(
    Admin(_): Admin,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    Ok(Json(app.service.set_agent_disabled(&name, false)?))
}
