//! The pure core: the release, stage-deployment and approval lifecycles. No I/O, no clock, no
//! randomness — the scheduler feeds it events (with the time) and applies the effects it returns.

mod event;
mod machine;
pub mod model;
mod recover;

pub use event::{Authority, Effect, Event, INTERRUPTED, TaskOutcome};
pub use machine::{InvalidTransition, apply};
pub use model::*;
pub use recover::recover;

#[cfg(test)]
mod tests;
