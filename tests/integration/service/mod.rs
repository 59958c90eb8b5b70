//! Service mode against a real server on 127.0.0.1 (in this process, or a `sluice serve`
//! child), one module per topic.

mod approvals;
mod auth;
mod conn;
mod contract;
mod graph;
mod idempotency;
mod lists;
mod names;
mod ops;
mod receipts;
mod reload;
mod scheduling;
mod secrets;
mod shutdown;
mod stream_limits;
mod streams;
mod terminal;
