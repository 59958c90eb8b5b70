//! Sluice: a release-pipeline engine whose every task, artifact source and gate is a sandboxed
//! WebAssembly component. See `ARCHITECTURE.md` for the map of the code.

// utoipa's `#[utoipa::path(params(..))]` expands to paths the lint calls over-qualified.
pub mod agent;
#[allow(unused_qualifications)]
pub mod api;
pub mod builtin;
pub mod core;
pub mod pipeline;
pub mod plugin;
pub mod registry;
pub mod scheduler;
pub mod secrets;
pub mod service;
pub mod store;
pub mod types;
