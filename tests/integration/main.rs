//! Sluice's integration tests: one binary (fast to link, one wasmtime build), one module per
//! area. The plugins under test were compiled by `engine/build.rs`; their paths arrive as
//! `SLUICE_PLUGIN_*` environment variables.

mod agents;
mod authoring;
mod builtins;
mod cli;
mod engine;
mod faults;
mod gates;
mod kept;
mod kill;
mod pipelines;
mod plugins;
mod queue;
mod sandbox;
mod secrets;
mod service;
mod startup;
mod storage;
mod support;
mod triggers;
mod variables;
