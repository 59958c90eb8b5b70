//! `ApiError`: every error response, `{"error": "...", ...}` with a status, made from the
//! service's and the store's errors; an internal error's detail rides to `guard` to be logged.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::views::ErrorBody;
use crate::scheduler::EngineError;
use crate::service::{InternalError, ServiceError};
use crate::store::StoreError;

/// An error response: `{"error": "...", ...}` with a status.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) body: ErrorBody,
    /// For 500s: the detail, logged with the request id by `guard`, never sent.
    internal: Option<String>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: message.into(),
                request_id: None,
                diagnostics: None,
                approval: None,
            },
            internal: None,
        }
    }

    /// A 400 that says what to fix.
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 500: `detail` goes to the log only.
    pub(super) fn internal(detail: impl Into<String>) -> Self {
        Self {
            internal: Some(detail.into()),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, m),
            ServiceError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, m),
            ServiceError::Conflict(m) => Self::new(StatusCode::CONFLICT, m),
            ServiceError::BadRequest(m) => Self::bad_request(m),
            ServiceError::Invalid(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            ServiceError::Unavailable(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, m),
            ServiceError::Pipeline(p) => {
                let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "the pipeline is invalid");
                e.body.diagnostics = Some(p.diagnostics.iter().map(ToString::to_string).collect());
                e
            }
            ServiceError::Internal(e) => match store_error(&e) {
                Some(store) => store.clone().into(),
                None => Self::internal(e.detail()),
            },
        }
    }
}

/// The store's error inside an internal one, if it is one.
fn store_error(e: &InternalError) -> Option<&StoreError> {
    match e {
        InternalError::Store(e) | InternalError::Engine(EngineError::Store(e)) => Some(e),
        _ => None,
    }
}

/// A full disk is a 507 and a store reopening after one a 503, each saying what to do; any
/// other store failure is an internal error.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if matches!(e, StoreError::NoSpace(_) | StoreError::Unavailable(_)) {
            tracing::warn!("a request refused: {e}");
        }
        match e {
            StoreError::NoSpace(_) => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient storage: the disk of the server's data directory is full, so \
                     nothing was changed; free space on it and retry (the server takes writes \
                     again by itself)",
            ),
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server's data store is reopening after a full disk: retry later",
            ),
            e => Self::internal(e.to_string()),
        }
    }
}

/// The detail of an internal error, handed from the response to `guard`.
#[derive(Clone)]
pub(super) struct InternalDetail(pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(detail) = self.internal {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        response
    }
}
