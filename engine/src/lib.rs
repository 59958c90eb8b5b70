//! Sluice: a release-pipeline engine whose every task, artifact source and gate is a sandboxed
//! WebAssembly component. See `ARCHITECTURE.md` for the map of the code.

pub mod api;
pub mod core;
pub mod pipeline;
pub mod plugin;
pub mod scheduler;
pub mod service;
pub mod store;
