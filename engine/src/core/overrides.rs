//! Admins' justified overrides: the one rule for a justification (said, and bounded), and the
//! records a release keeps of a freeze broken and of a deployment out of the graph's order.

use serde::{Deserialize, Serialize};

/// The longest justification kept, in characters (as the API's document counts them): enough to say why, not a place to store a file.
pub const MAX_JUSTIFICATION: usize = 2_000;

/// Checks the justification of `what` (e.g. "breaking a freeze"): not blank, at most
/// [`MAX_JUSTIFICATION`] characters. The error says what to fix.
pub fn check_justification(what: &str, justification: &str) -> Result<(), String> {
    if justification.trim().is_empty() {
        return Err(format!(
            "{what} needs a justification: say why, it is kept in the audit trail"
        ));
    }
    let length = justification.chars().count();
    if length > MAX_JUSTIFICATION {
        return Err(format!(
            "the justification for {what} is {length} characters: keep it to at most \
             {MAX_JUSTIFICATION}"
        ));
    }
    Ok(())
}

/// Who let a deployment through a freeze window, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BreakGlass {
    /// The admin.
    pub by: String,
    /// Why (required).
    pub justification: String,
    /// When (Unix milliseconds).
    pub at: u64,
}

/// Who deployed a stage by hand before the stages it comes after had succeeded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutOfOrder {
    /// The admin.
    pub by: String,
    /// Why (required).
    pub justification: String,
    /// When (Unix milliseconds).
    pub at: u64,
    /// What the stage was waiting for then: each upstream stage and where it was.
    pub waited_for: Vec<String>,
}
