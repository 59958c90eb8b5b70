//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations and the
//! types they take and return; served at `/api/v1/openapi.json`.

use std::sync::OnceLock;

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi};

use super::views::ErrorBody;

/// `{name}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct PipelinePath {
    /// Pipeline name.
    #[allow(dead_code)]
    name: String,
}

/// `{id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct ReleasePath {
    /// Release name, e.g. `space-game-7`.
    #[allow(dead_code)]
    id: String,
}

/// `{id}/stages/{stage}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct StagePath {
    /// Release name.
    id: String,
    /// Stage name.
    stage: String,
}

/// `{id}/stages/{stage}/attempts/{attempt}/tasks/{task}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct TaskPath {
    /// Release name.
    id: String,
    /// Stage name.
    stage: String,
    /// Attempt number: 1, 2, ...
    attempt: u32,
    /// Task name.
    task: String,
}

/// `{id}` of an approval.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct ApprovalPath {
    /// `RELEASE.STAGE.ATTEMPT.pre|post`.
    #[allow(dead_code)]
    id: String,
}

/// The `Idempotency-Key` header.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub(super) struct IdempotencyKey {
    /// A retry with the same key gets the first answer and changes nothing (1 to 200
    /// characters, per user).
    #[param(rename = "Idempotency-Key", pattern = "^[!-~]([ -~]{0,198}[!-~])?$")]
    #[allow(dead_code)]
    idempotency_key: Option<String>,
}

macro_rules! error_responses {
    ($($name:ident = $status:literal, $why:literal;)*) => {$(
        #[derive(IntoResponses)]
        #[response(status = $status, description = $why)]
        #[allow(dead_code)]
        pub(super) struct $name(ErrorBody);
    )*};
}

error_responses! {
    BadRequest = 400, "The request is malformed: the error says what to fix";
    Unauthenticated = 401, "No valid bearer token";
    Forbidden = 403, "The token's user may not do this";
    NotFound = 404, "No such thing";
    Conflict = 409, "It does not apply in the current state (an approval's is included)";
    TooLarge = 413, "The body is over the limit";
    Invalid = 422, "Well-formed but refused: an invalid pipeline (see diagnostics), an unknown artifact or version, an Idempotency-Key reused for another request";
}

/// One server-sent event, as `?follow=true` streams send them: `line` (data: the log line)
/// then `end`; or `audit` (data: the entry as JSON, id: its seq).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ServerEvent {
    event: String,
    data: String,
    id: Option<String>,
}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "Releases, deployments, approvals, logs and the audit trail of a Sluice service."
    ),
    paths(
        super::list_pipelines,
        super::get_pipeline,
        super::put_pipeline,
        super::validate_pipeline,
        super::create_release,
        super::list_releases,
        super::get_release,
        super::abandon,
        super::deploy,
        super::break_glass,
        super::cancel,
        super::task_log,
        super::release_logs,
        super::list_approvals,
        super::get_approval,
        super::approve,
        super::reject,
        super::reassign,
        super::audit,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Bearer),
    security(("token" = [])),
    tags(
        (name = "pipelines"), (name = "releases"), (name = "deployments"),
        (name = "approvals"), (name = "logs"), (name = "audit"),
    )
)]
struct ApiDoc;

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi).clone()
}
