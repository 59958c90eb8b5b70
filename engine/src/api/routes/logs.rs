//! Task logs: one task's as text (or live, as server-sent events), a release's as a `.tar.gz`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::auth::Auth;
use crate::api::error::ApiError;
use crate::api::extract::{Path, Query};
use crate::api::openapi::{
    BadRequest, NotFound, ReleasePath, ServerEvent, TaskPath, Unauthenticated,
};
use crate::api::{App, archive, sse, streams};
use crate::store::LogKey;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct FollowQuery {
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
pub(in crate::api) async fn task_log(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    headers: HeaderMap,
    Path((id, stage, attempt, task)): Path<(String, String, u32, String)>,
    Query(query): Query<FollowQuery>,
) -> Result<Response, ApiError> {
    // A reconnecting follower says which line it saw last.
    let resume = streams::resume(&headers, "log line (its number, from 1)")?;
    let key = LogKey {
        release: &id,
        stage: &stage,
        attempt,
        task: &task,
    };
    if query.follow {
        let slot = match streams::admit(&app, &user) {
            Ok(slot) => slot,
            Err(refused) => return Ok(refused.into_response()),
        };
        let mut follow = app.service.follow_log(&key)?;
        if let Some(next) = resume {
            // Past every line there can be: the follower waits for the end.
            follow.resume_after(usize::try_from(next - 1).unwrap_or(usize::MAX));
        }
        return Ok(sse::log(app, slot, follow));
    }
    let lines = app.service.task_log(&key)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no log for task `{task}` of {id} stage `{stage}` attempt {attempt} (yet): add ?follow=true to wait for it"
            ),
        )
    })?;
    // One line per line: `LogLine`'s display escapes the plugin's controls and newlines.
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Every stored task log of a release, as a `.tar.gz` of `RELEASE/STAGE/ATTEMPT/TASK.log`
/// files.
#[utoipa::path(get, path = "/api/v1/releases/{id}/logs", tag = "logs", params(ReleasePath),
    responses(
        (status = 200, description = "A .tar.gz archive", content_type = "application/gzip", body = Vec<u8>),
        Unauthenticated, NotFound))]
pub(in crate::api) async fn release_logs(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let logs = app.service.release_logs(&id)?;
    let archive = archive::logs(&id, &logs).map_err(|e| ApiError::internal(e.to_string()))?;
    let disposition = archive::disposition(&id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        archive,
    )
        .into_response())
}
