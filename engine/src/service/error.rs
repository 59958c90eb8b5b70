//! What a service call's failure is, in terms the API maps to a status.

use crate::core::InvalidTransition;
use crate::pipeline::PipelineError;
use crate::scheduler::EngineError;

/// Why a service call failed, in terms the API maps to a status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// The user may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// It does not apply to the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The input is wrong (400 / 422).
    #[error("{0}")]
    Invalid(String),
    /// A pipeline is invalid (422), with every diagnostic.
    #[error("{0}")]
    Pipeline(PipelineError),
    /// Something broke inside (500; details go to the log only).
    #[error("{0}")]
    Internal(String),
}

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NoRelease(name) => Self::NotFound(format!("there is no release `{name}`")),
            EngineError::Transition(t) => match t {
                InvalidTransition::NotAllowed(m) => Self::Forbidden(m),
                InvalidTransition::UnknownStage { .. } => Self::NotFound(t.to_string()),
                other => Self::Conflict(other.to_string()),
            },
            EngineError::Void(_) => Self::Conflict(e.to_string()),
            EngineError::Pipeline(p) => Self::Pipeline(p),
            EngineError::Artifact { .. } => Self::Invalid(e.to_string()),
            EngineError::Store(_) | EngineError::Stopped(_) => Self::Internal(e.to_string()),
        }
    }
}
