//! The pure core: the release, stage-deployment and approval lifecycles. No I/O, no clock, no
//! randomness — the scheduler feeds it events (with the time) and applies the effects it returns.

mod describe;
mod event;
mod machine;
pub mod model;
mod overrides;
mod recover;

pub use event::{Authority, Candidate, Effect, Event, INTERRUPTED, TaskOutcome, agent_lost};
pub use machine::{InvalidTransition, apply};
pub use model::*;
pub use overrides::{MAX_JUSTIFICATION, check_justification};
pub use recover::recover;

#[cfg(test)]
mod tests;
