//! `/api/v1/releases` and a release's deployments: create (releasers), list and read releases;
//! abandon a release, deploy (in the graph's order; admins out of it) or cancel a stage
//! (releasers), break a freeze (admins).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{DeferUntil, default_limit};
use crate::api::App;
use crate::api::auth::{Admin, Auth, Releaser};
use crate::api::bounds;
use crate::api::error::ApiError;
use crate::api::extract::{Idempotency, Path, Query, Strict, count};
use crate::api::idempotency::mutate;
use crate::api::openapi::{
    BadRequest, Conflict, Forbidden, IdempotencyKey, Invalid, NotFound, PipelinePath, ReleasePath,
    StagePath, TooLarge, Unauthenticated,
};
use crate::api::views::{ReleaseList, ReleaseSummary, ReleaseView};
use crate::core::{Event, ReleaseState};
use crate::scheduler::CreateOptions;
use crate::service::queries::ReleaseFilter;
use crate::service::{Role, User};

/// A new release: artifact versions (latest, or the pipeline's selector, unless given),
/// variables settable at release time, a description.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct CreateRelease {
    /// Artifact alias -> version id.
    #[serde(default)]
    #[schema(schema_with = bounds::artifacts_schema)]
    artifacts: BTreeMap<String, String>,
    /// Variable name -> value: only variables the pipeline declares `settable = true` (any
    /// other, `sluice.*` included, is refused with 422).
    #[serde(default)]
    #[schema(schema_with = bounds::variables_schema)]
    variables: BTreeMap<String, String>,
    /// What this release is for (at most 2000 characters).
    #[schema(max_length = 2000)]
    description: Option<String>,
}

impl CreateRelease {
    /// 400 for a string longer than the document allows, naming it.
    fn check(&self) -> Result<(), ApiError> {
        bounds::map("artifacts", &self.artifacts, bounds::VERSION)?;
        bounds::map("variables", &self.variables, bounds::VALUE)?;
        let description = self.description.as_deref().unwrap_or_default();
        bounds::at_most("description", description, bounds::TEXT)
    }
}

/// Create a release of a pipeline (releasers); its first stages start at once.
#[utoipa::path(post, path = "/api/v1/pipelines/{name}/releases", tag = "releases",
    params(PipelinePath, IdempotencyKey), request_body(content = Option<CreateRelease>),
    responses((status = 201, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Invalid, TooLarge))]
pub(in crate::api) async fn create_release(
    State(app): State<Arc<App>>,
    Releaser(user): Releaser,
    Path(name): Path<String>,
    key: Idempotency,
    body: Strict<CreateRelease>,
) -> Result<Response, ApiError> {
    let fingerprint = body.fingerprint("create", &[&name]);
    let request = body.value;
    request.check()?;
    let options = CreateOptions {
        artifacts: request.artifacts,
        variables: request.variables.into_iter().collect(),
        creator: user.name.clone(),
        description: request.description,
    };
    let service = &app.service;
    mutate(
        &app,
        &user,
        key,
        &fingerprint,
        StatusCode::CREATED,
        |receipt| service.create_release(&name, options, receipt),
    )
    .await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct ListReleases {
    /// Only this pipeline's releases (a pipeline name: at most 64 characters).
    #[param(max_length = 64)]
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

/// List releases, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases", params(ListReleases),
    responses((status = 200, body = ReleaseList<'static>), BadRequest, Unauthenticated))]
pub(in crate::api) async fn list_releases(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    Query(query): Query<ListReleases>,
) -> Result<Response, ApiError> {
    let (limit, offset) = (
        count("limit", query.limit, 500)?,
        count("offset", query.offset, i64::MAX)?,
    );
    let pipeline = query.pipeline.as_deref().unwrap_or_default();
    bounds::at_most("pipeline", pipeline, bounds::PIPELINE)?;
    let filter = ReleaseFilter {
        pipeline: query.pipeline,
        state: query.state,
    };
    let page = app.service.list_releases(&filter, offset, limit)?;
    let list = ReleaseList {
        releases: page.releases.iter().map(ReleaseSummary::of).collect(),
        total: page.total,
        offset,
    };
    Ok(Json(list).into_response())
}

/// A release: its stages with their attempts, tasks and approvals, its artifact versions and
/// plugin digests. 409 for a quarantined release (its stored record does not decode).
#[utoipa::path(get, path = "/api/v1/releases/{id}", tag = "releases", params(ReleasePath),
    responses((status = 200, body = ReleaseView<'static>), Unauthenticated, NotFound, Conflict))]
pub(in crate::api) async fn get_release(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let release = app.service.release(&id)?;
    let waiting = app.service.agents().waiting(&release.name);
    Ok(Json(ReleaseView::of(&release).waiting(waiting)).into_response())
}

/// The body of a deploy, cancel or abandon: nothing (or `{}`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct NoFields {}

/// A deploy: now, or `at` a time; in the graph's order unless an admin says otherwise.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct DeployRequest {
    /// Deploy at this time instead of now: RFC 3339 or Unix milliseconds. Nothing is asked
    /// (approvals, a queue turn) before then.
    at: Option<DeferUntil>,
    /// Deploy although a stage this one comes after has not succeeded (admins; needs
    /// `justification`). Without it, such a deploy is refused with 409 naming what it waits for.
    #[serde(default, rename = "out-of-order")]
    out_of_order: bool,
    /// Why it cannot wait for the stages it comes after (required with `out-of-order`, only
    /// with it; at most 2000 characters, not only white space); kept on the deployment and in the audit trail.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    justification: Option<String>,
}

/// Checks the justification of an admin's override (`what`, e.g. "breaking a freeze"): 400
/// when it is blank or too long (the document says neither is one).
pub(in crate::api) fn justified(what: &str, justification: &str) -> Result<(), ApiError> {
    crate::core::check_justification(what, justification).map_err(ApiError::bad_request)
}

/// An override sent without its justification: well-formed (the document cannot say that one
/// field needs another's value), refused with 422.
pub(in crate::api) fn unjustified(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("{what} needs a justification: say why, it is kept in the audit trail"),
    )
}

/// Submits `event` to `release` as `user`, whose role the handler's extractor checked; the
/// request's `fingerprint` is `Strict::fingerprint`.
async fn release_event(
    app: &App,
    user: User,
    key: Idempotency,
    fingerprint: String,
    release: String,
    event: Event,
) -> Result<Response, ApiError> {
    let service = &app.service;
    mutate(app, &user, key, &fingerprint, StatusCode::OK, |receipt| {
        service.submit(&release, event, &user, receipt)
    })
    .await
}

/// Abandon a release (releasers): nothing more of it deploys.
#[utoipa::path(post, path = "/api/v1/releases/{id}/abandon", tag = "releases",
    params(ReleasePath, IdempotencyKey), request_body(content = Option<NoFields>),
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(in crate::api) async fn abandon(
    State(app): State<Arc<App>>,
    Releaser(user): Releaser,
    Path(id): Path<String>,
    key: Idempotency,
    body: Strict<NoFields>,
) -> Result<Response, ApiError> {
    let fingerprint = body.fingerprint("abandon", &[&id]);
    release_event(&app, user, key, fingerprint, id, Event::Abandon).await
}

/// Deploy (or redeploy, as a new attempt) a stage by hand (releasers), now or at a time: 409
/// while a stage it comes after has not succeeded (or waits for its post-deployment
/// approval), unless an admin deploys `out-of-order` with a `justification`.
#[utoipa::path(post, path = "/api/v1/releases/{id}/stages/{stage}/deploy", tag = "deployments",
    params(StagePath, IdempotencyKey), request_body(content = Option<DeployRequest>),
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(in crate::api) async fn deploy(
    State(app): State<Arc<App>>,
    Releaser(user): Releaser,
    Path((id, stage)): Path<(String, String)>,
    key: Idempotency,
    body: Strict<DeployRequest>,
) -> Result<Response, ApiError> {
    let fingerprint = body.fingerprint("deploy", &[&id, &stage]);
    let DeployRequest {
        at,
        out_of_order,
        justification,
    } = body.value;
    let at = at.as_ref().map(|t| t.millis("at")).transpose()?;
    let event = match (out_of_order, justification) {
        (true, _) if !user.has(Role::Admin) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is not an admin: only admins may deploy out of order",
                    user.name
                ),
            ));
        }
        (true, justification) => {
            let justification =
                justification.ok_or_else(|| unjustified("deploying out of order"))?;
            justified("deploying out of order", &justification)?;
            Event::DeployOutOfOrder {
                stage,
                at,
                by: user.name.clone(),
                justification,
            }
        }
        (false, Some(_)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`justification` goes with `out-of-order: true` (an admin's deploy out of the \
                 graph's order): remove it, or add `out-of-order: true`",
            ));
        }
        (false, None) => match at {
            Some(at) => Event::Schedule { stage, at },
            None => Event::Deploy { stage },
        },
    };
    release_event(&app, user, key, fingerprint, id, event).await
}

/// Cancel a stage's deployment (releasers): running tasks are stopped.
#[utoipa::path(post, path = "/api/v1/releases/{id}/stages/{stage}/cancel", tag = "deployments",
    params(StagePath, IdempotencyKey), request_body(content = Option<NoFields>),
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(in crate::api) async fn cancel(
    State(app): State<Arc<App>>,
    Releaser(user): Releaser,
    Path((id, stage)): Path<(String, String)>,
    key: Idempotency,
    body: Strict<NoFields>,
) -> Result<Response, ApiError> {
    let fingerprint = body.fingerprint("cancel", &[&id, &stage]);
    release_event(&app, user, key, fingerprint, id, Event::Cancel { stage }).await
}

/// Breaking a freeze: why it cannot wait.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct BreakGlassRequest {
    /// Why this deployment goes inside a freeze window (required; at most 2000 characters, not only white space;
    /// audited).
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    justification: String,
}

/// Let a deployment that waits out a freeze window go now (admins; audited, with the
/// justification).
#[utoipa::path(post, path = "/api/v1/releases/{id}/stages/{stage}/break-glass", tag = "deployments",
    params(StagePath, IdempotencyKey), request_body = BreakGlassRequest,
    responses((status = 200, body = ReleaseView<'static>), BadRequest, Unauthenticated, Forbidden, NotFound, Conflict, Invalid))]
pub(in crate::api) async fn break_glass(
    State(app): State<Arc<App>>,
    Admin(user): Admin,
    Path((id, stage)): Path<(String, String)>,
    key: Idempotency,
    body: Strict<BreakGlassRequest>,
) -> Result<Response, ApiError> {
    let fingerprint = body.fingerprint("break-glass", &[&id, &stage]);
    let BreakGlassRequest { justification } = body.value;
    justified("breaking a freeze", &justification)?;
    let event = Event::BreakGlass {
        stage,
        by: user.name.clone(),
        justification,
    };
    release_event(&app, user, key, fingerprint, id, event).await
}
