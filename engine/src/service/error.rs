//! The service's errors: why a call failed (in terms the API maps to a status), what broke
//! inside when it was not the caller's doing, why the service did not start, why it is not
//! ready.

use std::path::PathBuf;

use super::pipelines::LoadPipelinesError;
use super::triggers::TriggerError;
use crate::core::InvalidTransition;
use crate::pipeline::PipelineError;
use crate::plugin::HostError;
use crate::scheduler::EngineError;
use crate::store::StoreError;
use crate::types::PathEscape;

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
    /// The input is wrong (422).
    #[error("{0}")]
    Invalid(String),
    /// The request itself is malformed or asks for what it may not (400): a name that is not
    /// a name, a release-time variable that is not settable.
    #[error("{0}")]
    BadRequest(String),
    /// Not now: try again shortly (503), as an agent that has not re-joined a restarted
    /// server does until its renewal re-joins it.
    #[error("{0}")]
    Unavailable(String),
    /// A pipeline is invalid (422), with every diagnostic.
    #[error("{0}")]
    Pipeline(PipelineError),
    /// Something broke inside (500; details go to the log only). It reads as its cause's first
    /// line, for logs that print only `{e}` (the log streams); `InternalError::detail` tells the
    /// whole chain.
    #[error("internal error: {0}")]
    Internal(#[from] InternalError),
}

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NoRelease(name) => Self::NotFound(format!("there is no release `{name}`")),
            EngineError::Transition(t) => match t {
                InvalidTransition::NotAllowed(m) => Self::Forbidden(m),
                InvalidTransition::Ineligible(m) => Self::Invalid(m),
                InvalidTransition::UnknownStage { .. } => Self::NotFound(t.to_string()),
                other => Self::Conflict(other.to_string()),
            },
            EngineError::Void(_) => Self::Conflict(e.to_string()),
            EngineError::Pipeline(p) => Self::Pipeline(p),
            EngineError::Artifact { .. } => Self::Invalid(e.to_string()),
            EngineError::NotSettable(_) => Self::Invalid(e.to_string()),
            EngineError::Store(_) | EngineError::Stopped(_) => {
                Self::Internal(InternalError::Engine(e))
            }
        }
    }
}

/// What broke inside the service, when a call failed through nobody's fault.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    /// The store failed a read or a commit.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine failed (its store, or it has stopped).
    #[error(transparent)]
    Engine(EngineError),
    /// A pipeline's file could not be written.
    #[error("writing {}", path.display())]
    WritePipeline {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A path made from names would have left its directory (defence in depth: names are
    /// checked before they reach a path).
    #[error(transparent)]
    Path(#[from] PathEscape),
    /// A release trigger failed.
    #[error("a release trigger")]
    Trigger(#[source] TriggerError),
}

impl InternalError {
    /// The whole story for the log: this error and every source, joined by `: `.
    pub fn detail(&self) -> String {
        let mut detail = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            detail.push_str(&format!(": {e}"));
            source = e.source();
        }
        detail
    }
}

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store would not open.
    #[error(transparent)]
    Store(StoreError),
    /// The data or pipelines directory is not there.
    #[error("{}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The plugin host would not start.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A pipeline in the pipelines directory is invalid, or the directory is unreadable.
    #[error(transparent)]
    Pipelines(#[from] LoadPipelinesError),
    /// The releases to resume could not be read.
    #[error(transparent)]
    Releases(StoreError),
    /// Unfinished releases could not be resumed.
    #[error(transparent)]
    Resume(EngineError),
    /// The secret key is there but unusable (malformed, or others may read it).
    #[error(transparent)]
    SecretKey(#[from] crate::secrets::SecretError),
}

/// Why the service takes no work now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// Still recovering the releases a restart interrupted.
    #[error("recovering unfinished releases")]
    Recovering,
    /// The disk of the data directory is full: writes are refused (507) until space returns.
    #[error(
        "the disk of the data directory is full: writes are refused until space is freed on it \
         (sluice retries every 2 s and takes writes again by itself)"
    )]
    DiskFull,
    /// The store failed an I/O call other than for a full disk: the process is stopping.
    #[error("the data store failed an I/O call: sluice is stopping so that a restart recovers it")]
    StoreFailed,
}
