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
use crate::api::bounds;
use crate::api::error::ApiError;
use crate::api::extract::{Query, count};
use crate::api::openapi::{BadRequest, ServerEvent, Unauthenticated};
use crate::api::views::AuditList;
use crate::api::{App, sse, streams};
use crate::service::queries::AuditQuery as Select;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct AuditQuery {
    /// Only this release's entries (at most 100 characters).
    #[param(max_length = 100)]
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
    Auth(user): Auth,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = count("limit", query.limit, 10_000)?;
    bounds::at_most(
        "release",
        query.release.as_deref().unwrap_or_default(),
        bounds::NAME,
    )?;
    // `after` is at most i64::MAX: the entry after it has a number.
    let after = match query.after {
        Some(after) => Some(count("after", after, i64::MAX)? as u64 + 1),
        None => None,
    };
    // A reconnecting event stream says where it was.
    let resume = streams::resume(&headers, "audit entry (its seq)")?;
    let select = Select {
        release: query.release,
        from: resume.or(after),
        limit,
    };
    if query.follow {
        let slot = match streams::admit(&app, &user) {
            Ok(slot) => slot,
            Err(refused) => return Ok(refused.into_response()),
        };
        let start = app.service.audit_start(&select)?;
        return Ok(sse::audit(app, slot, start, select.release));
    }
    let page = app.service.audit(&select)?;
    Ok(Json(AuditList {
        entries: page.entries,
    })
    .into_response())
}
