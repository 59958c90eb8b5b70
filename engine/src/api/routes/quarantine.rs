//! `/api/v1/quarantine`: the stored records that did not decode and were moved aside (see
//! `store/quarantine.rs`), so an operator sees what is missing from the release lists.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::App;
use crate::api::auth::Auth;
use crate::api::error::ApiError;
use crate::api::openapi::Unauthenticated;
use crate::store::Quarantined;

/// `GET /quarantine`.
#[derive(Serialize, ToSchema)]
pub(in crate::api) struct QuarantineList {
    /// Every quarantined record, by key: a release that is not in the release lists because
    /// its stored record does not decode (its bytes are kept).
    quarantined: Vec<Quarantined>,
}

/// The quarantined records: releases whose stored record does not decode, moved aside (with
/// an audit entry) so that every other release goes on.
#[utoipa::path(get, path = "/api/v1/quarantine", tag = "releases",
    responses((status = 200, body = QuarantineList), Unauthenticated))]
pub(in crate::api) async fn quarantine(
    State(app): State<Arc<App>>,
    Auth(_): Auth,
) -> Result<Response, ApiError> {
    let quarantined = app.service.store().quarantined()?;
    Ok(Json(QuarantineList { quarantined }).into_response())
}
