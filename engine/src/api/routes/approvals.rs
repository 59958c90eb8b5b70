//! `/api/v1/approvals`: list and read approvals; approve, reject or reassign one. A 409 says
//! what state the approval is in now.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::releases::{justified, unjustified};
use super::{DeferUntil, default_limit};
use crate::api::App;
use crate::api::auth::{Approver, Auth, approval_authority};
use crate::api::bounds;
use crate::api::error::ApiError;
use crate::api::extract::{Idempotency, Path, Query, Strict, count};
use crate::api::idempotency::mutate;
use crate::api::openapi::{
    ApprovalPath, BadRequest, Conflict, Forbidden, IdempotencyKey, Invalid, NotFound,
    Unauthenticated,
};
use crate::api::views::{ApprovalList, ReleaseView};
use crate::core::{ApprovalState, Authority};
use crate::service::queries::ApprovalFilter;
use crate::service::{ApprovalView, DecisionRequest, User};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct ListApprovals {
    /// Approvals in this state (`all`: any).
    #[serde(default)]
    #[param(inline)]
    status: StatusFilter,
    /// `me`, or a user or `group:NAME` listed as approver (at most 106 characters).
    #[param(max_length = 106)]
    approver: Option<String>,
    /// Only this release's approvals (at most 100 characters).
    #[param(max_length = 100)]
    release: Option<String>,
    /// Only this stage's (at most 100 characters).
    #[param(max_length = 100)]
    stage: Option<String>,
    /// Page size.
    #[serde(default = "default_limit")]
    #[param(minimum = 0, maximum = 500)]
    limit: i64,
    /// Approvals to skip.
    #[serde(default)]
    #[param(minimum = 0)]
    offset: i64,
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

/// List approvals, a page at a time: pending ones by default; `approver=me` for those the
/// caller may decide. Other states come newest release first (`all`: grouped by state).
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals", params(ListApprovals),
    responses((status = 200, body = ApprovalList), BadRequest, Unauthenticated))]
pub(in crate::api) async fn list_approvals(
    State(app): State<Arc<App>>,
    Auth(user): Auth,
    Query(query): Query<ListApprovals>,
) -> Result<Json<ApprovalList>, ApiError> {
    let (limit, offset) = (
        count("limit", query.limit, 500)?,
        count("offset", query.offset, i64::MAX)?,
    );
    for (field, value, max) in [
        ("approver", &query.approver, bounds::ASSIGNEE),
        ("release", &query.release, bounds::NAME),
        ("stage", &query.stage, bounds::NAME),
    ] {
        bounds::at_most(field, value.as_deref().unwrap_or_default(), max)?;
    }
    let filter = ApprovalFilter {
        state: query.status.state(),
        approver: query.approver,
        release: query.release,
        stage: query.stage,
    };
    let page = app.service.list_approvals(&filter, &user, offset, limit)?;
    Ok(Json(ApprovalList {
        approvals: page.approvals,
        total: page.total,
        offset,
    }))
}

/// One approval, with its decisions.
#[utoipa::path(get, path = "/api/v1/approvals/{id}", tag = "approvals", params(ApprovalPath),
    responses((status = 200, body = ApprovalView), Unauthenticated, NotFound))]
pub(in crate::api) async fn get_approval(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    Path(id): Path<String>,
) -> Result<Json<ApprovalView>, ApiError> {
    Ok(Json(app.service.approval(&id)?))
}

/// An approval's decision (the body of an approve).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(in crate::api) struct Decide {
    /// Why; kept in the audit trail (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    comment: String,
    /// Decide for every approver (admins; needs `justification`).
    #[serde(default, rename = "override")]
    override_approvers: bool,
    /// Why an admin overrides the approvers (required with `override`, only with it; at most
    /// 2000 characters, not only white space); kept on the decision and in the audit trail.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    justification: Option<String>,
    /// Approve now, deploy at this time: RFC 3339 (`2026-11-24T06:00:00+01:00`) or Unix
    /// milliseconds.
    defer_until: Option<DeferUntil>,
}

/// A rejection (the body of a reject): a decision without a time to deploy at.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(in crate::api) struct Reject {
    /// Why; kept in the audit trail (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    comment: String,
    /// Decide for every approver (admins; needs `justification`).
    #[serde(default, rename = "override")]
    override_approvers: bool,
    /// Why an admin overrides the approvers (required with `override`, only with it; at most
    /// 2000 characters, not only white space); kept on the decision and in the audit trail.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    justification: Option<String>,
}

impl From<Reject> for Decide {
    fn from(reject: Reject) -> Self {
        Self {
            comment: reject.comment,
            override_approvers: reject.override_approvers,
            justification: reject.justification,
            defer_until: None,
        }
    }
}

async fn decide<T: Into<Decide>>(
    app: &App,
    user: User,
    id: String,
    key: Idempotency,
    body: Strict<T>,
    approve: bool,
) -> Result<Response, ApiError> {
    let verb = if approve { "approve" } else { "reject" };
    let fingerprint = body.fingerprint(verb, &[&id]);
    let request: Decide = body.value.into();
    bounds::at_most("comment", &request.comment, bounds::TEXT)?;
    let defer_until = request
        .defer_until
        .as_ref()
        .map(|t| t.millis("defer-until"))
        .transpose()?;
    let decision = DecisionRequest {
        approve,
        comment: request.comment,
        authority: authority(
            &user,
            request.override_approvers,
            request.justification,
            "overriding the approvers",
        )?,
        defer_until,
    };
    let service = &app.service;
    let result = mutate(app, &user, key, &fingerprint, StatusCode::OK, |receipt| {
        service.decide(&id, &user, decision, receipt)
    })
    .await;
    with_approval_state(app, &id, result)
}

/// The authority of a decision or reassignment: an admin's override needs a justification
/// (422 without one, or with one on no override; 400 for a blank or long one), after the role
/// (403) is checked.
fn authority(
    user: &User,
    override_approvers: bool,
    justification: Option<String>,
    what: &str,
) -> Result<Authority, ApiError> {
    let given = justification.is_some();
    let authority =
        approval_authority(user, override_approvers, justification.unwrap_or_default())?;
    match &authority {
        Authority::Override { .. } if !given => return Err(unjustified(what)),
        Authority::Override { justification } => justified(what, justification)?,
        _ if given => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`justification` goes with `override: true` (an admin's override): remove it, \
                 or add `override: true`",
            ));
        }
        _ => {}
    }
    Ok(authority)
}

/// A 409 on an approval says what state it is in now.
fn with_approval_state(
    app: &App,
    id: &str,
    result: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    result.map_err(|mut e| {
        if e.status == StatusCode::CONFLICT {
            e.body.approval = app.service.approval(id).ok().map(Box::new);
        }
        e
    })
}

/// Approve (approvers listed on it, directly or through a group; admins with `override` and a
/// `justification`).
/// With `defer-until`, the deployment waits until then.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", tag = "approvals",
    params(ApprovalPath, IdempotencyKey), request_body(content = Option<Decide>),
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(in crate::api) async fn approve(
    State(app): State<Arc<App>>,
    Approver(user): Approver,
    Path(id): Path<String>,
    key: Idempotency,
    body: Strict<Decide>,
) -> Result<Response, ApiError> {
    decide(&app, user, id, key, body, true).await
}

/// Reject: the deployment does not go ahead.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/reject", tag = "approvals",
    params(ApprovalPath, IdempotencyKey), request_body(content = Option<Reject>),
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(in crate::api) async fn reject(
    State(app): State<Arc<App>>,
    Approver(user): Approver,
    Path(id): Path<String>,
    key: Idempotency,
    body: Strict<Reject>,
) -> Result<Response, ApiError> {
    decide(&app, user, id, key, body, false).await
}

/// Hand an approval to someone else.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct Reassign {
    /// A user, or `group:NAME`.
    #[schema(min_length = 1, max_length = 106)]
    to: String,
    /// Why; kept in the audit trail (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    comment: String,
    /// Reassign without being an approver on it (admins; needs `justification`).
    #[serde(default, rename = "override")]
    override_approvers: bool,
    /// Why an admin overrides the approvers (required with `override`, only with it; at most
    /// 2000 characters, not only white space); kept on the approval and in the audit trail.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    justification: Option<String>,
}

impl Reassign {
    /// 400 for an empty `to`, or a string longer than the document allows, naming it.
    fn check(&self) -> Result<(), ApiError> {
        if self.to.is_empty() {
            return Err(ApiError::bad_request(
                "to is empty: name a user, or group:NAME",
            ));
        }
        bounds::at_most("to", &self.to, bounds::ASSIGNEE)?;
        bounds::at_most("comment", &self.comment, bounds::TEXT)
    }
}

/// Reassign an approval to another user or group: an approver listed on it (not the release's
/// creator, unless the stage allows the creator) hands their part to someone the stage lists,
/// by name or through a group; an admin with `override` and a `justification` hands it to
/// anyone who may approve. Either way `to` must be a known user with the approver role (or a
/// group with one), never the creator unless the stage allows it: else 422, naming who may be
/// chosen.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/reassign", tag = "approvals",
    params(ApprovalPath, IdempotencyKey), request_body = Reassign,
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(in crate::api) async fn reassign(
    State(app): State<Arc<App>>,
    Approver(user): Approver,
    Path(id): Path<String>,
    key: Idempotency,
    body: Strict<Reassign>,
) -> Result<Response, ApiError> {
    let fingerprint = body.fingerprint("reassign", &[&id]);
    let request = body.value;
    request.check()?;
    let authority = authority(
        &user,
        request.override_approvers,
        request.justification,
        "reassigning on an override",
    )?;
    let service = &app.service;
    let result = mutate(&app, &user, key, &fingerprint, StatusCode::OK, |receipt| {
        service.reassign(&id, &user, request.to, request.comment, authority, receipt)
    })
    .await;
    with_approval_state(&app, &id, result)
}
