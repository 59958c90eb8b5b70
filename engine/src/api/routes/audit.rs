//! `/api/v1/audit`: the audit trail, a page at a time or followed as server-sent events.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::default_limit;
use crate::api::auth::Auth;
use crate::api::error::ApiError;
use crate::api::extract::{Query, count};
use crate::api::openapi::{BadRequest, ServerEvent, Unauthenticated};
use crate::api::views::AuditList;
use crate::api::{App, sse};
use crate::service::queries::AuditQuery as Select;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct AuditQuery {
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
pub(in crate::api) async fn audit(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
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
    let select = Select {
        release: query.release,
        after: resume.or(after),
        limit,
    };
    let page = app.service.audit(&select)?;
    if query.follow {
        return Ok(sse::audit(app, page.entries, page.next, select.release));
    }
    Ok(Json(AuditList {
        entries: page.entries,
    })
    .into_response())
}
