//! `/api/v1/pipelines`: list, read, replace (admins) and validate (releasers) pipelines.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;

use crate::api::App;
use crate::api::auth::{Admin, Auth, Releaser};
use crate::api::error::ApiError;
use crate::api::extract::Path;
use crate::api::openapi::{
    BadRequest, Forbidden, Invalid, NotFound, PipelinePath, TooLarge, Unauthenticated,
};
use crate::api::views::{
    PipelineDetail, PipelineList, PipelineSaved, PipelineSummary, PipelineVersionInfo, Validated,
};

/// List the pipelines the service serves.
#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines",
    responses((status = 200, body = PipelineList), Unauthenticated))]
pub(in crate::api) async fn list_pipelines(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
) -> Json<PipelineList> {
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
pub(in crate::api) async fn get_pipeline(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
    Path(name): Path<String>,
) -> Result<Json<PipelineDetail>, ApiError> {
    let pipeline = app.service.pipeline(&name)?;
    let versions = app.service.pipeline_versions(&name)?;
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
    std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the body must be TOML text (UTF-8)"))
}

/// Replace a pipeline (admins): the TOML is validated, stored as the next version and written
/// to its file. Releases already created keep their snapshot.
#[utoipa::path(put, path = "/api/v1/pipelines/{name}", tag = "pipelines", params(PipelinePath),
    request_body(content = String, content_type = "text/plain", description = "The pipeline's TOML"),
    responses((status = 200, body = PipelineSaved), BadRequest, Unauthenticated, Forbidden, Invalid, TooLarge))]
pub(in crate::api) async fn put_pipeline(
    State(app): State<Arc<App>>,
    Admin(user): Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<PipelineSaved>, ApiError> {
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
pub(in crate::api) async fn validate_pipeline(
    State(app): State<Arc<App>>,
    Releaser(_): Releaser,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Validated>, ApiError> {
    let loaded = app.service.validate_pipeline(&name, toml_body(&body)?)?;
    Ok(Json(Validated {
        valid: true,
        name: loaded.plan.name,
    }))
}
