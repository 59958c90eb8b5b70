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
    /// Pipeline name: lowercase letters, digits, `-` and `_`, starting with a letter or digit,
    /// at most 64 characters (any other is a 400).
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
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
    Invalid = 422, "Well-formed but refused on its meaning: an invalid pipeline (see diagnostics), an unknown artifact or version, a variable the pipeline does not declare settable, a justification without its override or out-of-order (or one of those without a justification), an Idempotency-Key reused for another request";
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

/// The answers every operation may give, each with the JSON error body: the guard's
/// (`api/guard.rs`, `api/edges.rs`) and the router's. An operation's own description of one
/// (its 400, 413) is kept.
struct EveryOperation;

/// Status, description, whether it carries `Retry-After`.
const EVERY_OPERATION: &[(&str, &str, bool)] = &[
    (
        "400",
        "The request is malformed (a path or query string that is not percent-encoded UTF-8 included): the error says what to fix",
        false,
    ),
    (
        "405",
        "The path does not take this method: see Allow",
        false,
    ),
    ("413", "The body is over the limit (limits.body)", false),
    ("414", "The request URI is over 8 KiB", false),
    (
        "415",
        "The body has a Content-Encoding other than identity: send it as is",
        false,
    ),
    (
        "429",
        "Over the rate limit (per user; per address without a valid token): retry after the seconds in Retry-After",
        true,
    ),
    (
        "431",
        "More than 100 header fields, or over 32 KiB of headers",
        false,
    ),
    (
        "503",
        "The server is shutting down, at its connection limit, or its store is reopening after a full disk: retry later",
        false,
    ),
    (
        "507",
        "The disk of the server's data directory is full: nothing was changed; free space and retry",
        false,
    ),
];

impl Modify for EveryOperation {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{Content, Ref, ResponseBuilder, header::Header};
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for (status, why, retry_after) in EVERY_OPERATION {
                    let mut response = ResponseBuilder::new().description(*why).content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                    );
                    if *retry_after {
                        response = response.header(
                            "Retry-After",
                            Header::new(ObjectBuilder::new().schema_type(Type::Integer)),
                        );
                    }
                    operation
                        .responses
                        .responses
                        .entry((*status).into())
                        .or_insert_with(|| response.build().into());
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "Releases, deployments, approvals, logs and the audit trail of a Sluice service."
    ),
    paths(
        super::routes::pipelines::list_pipelines,
        super::routes::pipelines::get_pipeline,
        super::routes::pipelines::put_pipeline,
        super::routes::pipelines::validate_pipeline,
        super::routes::releases::create_release,
        super::routes::releases::list_releases,
        super::routes::releases::get_release,
        super::routes::releases::abandon,
        super::routes::releases::deploy,
        super::routes::releases::break_glass,
        super::routes::releases::cancel,
        super::routes::logs::task_log,
        super::routes::logs::release_logs,
        super::routes::approvals::list_approvals,
        super::routes::approvals::get_approval,
        super::routes::approvals::approve,
        super::routes::approvals::reject,
        super::routes::approvals::reassign,
        super::routes::audit::audit,
        super::routes::quarantine::quarantine,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Bearer, &EveryOperation),
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
