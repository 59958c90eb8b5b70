//! Reassigning a pending approval: who may hand it on (a listed approver who is not the
//! release's creator, unless the stage allows the creator; an admin's justified override) and
//! to whom. The new approver must be someone who can decide it — a known user who may approve
//! (a [`Candidate`]), or a group with such a member — that the stage lists by name or through a
//! group; on an override, anyone who may approve. A target nobody could decide for would
//! strand the approval until it expires: it is refused, naming who may be chosen.

use super::approval::{listed_as, names, pending};
use super::{InvalidTransition, Step, attempt_no, phase, stage_index};
use crate::core::check_justification;
use crate::core::event::{Authority, Candidate, Effect, Event};
use crate::core::model::*;

/// The most names a refusal lists (then "and N more").
const SHOWN: usize = 20;

/// Applies `Event::Reassign`.
pub(super) fn on(release: &mut Release, event: Event, now: u64, effects: &mut Vec<Effect>) -> Step {
    let Event::Reassign {
        stage,
        attempt: number,
        kind,
        by,
        groups,
        to,
        candidates,
        comment,
        authority,
    } = event
    else {
        unreachable!("not a reassignment: {event:?}")
    };
    let i = stage_index(release, &stage)?;
    let creator = release.creator.clone();
    let spec = phase(&release.plan.stages[i], kind).0;
    let allow_creator = spec.is_some_and(|a| a.allow_release_creator);
    let listed = spec.map(|a| a.approvers.clone()).unwrap_or_default();
    let attempt = attempt_no(release, i, number, "reassign an approval")?;
    let approval = pending(attempt, &stage, kind)?;
    // The four-eyes rule: whoever may not approve may not choose who does either.
    if authority == Authority::Approver && by == creator && !allow_creator {
        return Err(InvalidTransition::NotAllowed(format!(
            "{by} created this release and the stage does not allow the release creator \
             to approve, so may not choose who does: another of its approvers ({}) may \
             reassign it, or an admin with override",
            listed.join(", ")
        )));
    }
    if let Authority::Override { justification } = &authority {
        check_justification("reassigning on an override", justification)
            .map_err(InvalidTransition::NotAllowed)?;
    }
    let entry = match &authority {
        Authority::Approver => Some(listed_as(approval, &by, &groups).ok_or_else(|| {
            InvalidTransition::NotAllowed(format!("{by} is not an approver of this stage"))
        })?),
        Authority::Override { .. } | Authority::Operator => None,
    };
    if approval.approvers.contains(&to) {
        return Err(InvalidTransition::Conflict(format!(
            "{to} is already an approver of this stage"
        )));
    }
    let choice = Choice {
        // In person, only someone the stage lists; on an override, anyone who may approve.
        listed: entry.is_some().then_some(&listed[..]),
        candidates: &candidates,
        creator: &creator,
        allow_creator,
        taken: &approval.approvers,
        by: &by,
    };
    choice.check(&to)?;
    let mut next = approval.clone();
    next.approvers = match entry {
        None => vec![to.clone()],
        Some(entry) => {
            let mut approvers = approval.approvers.clone();
            if let Some(at) = approvers.iter().position(|a| *a == entry) {
                approvers[at] = to.clone();
            }
            approvers
        }
    };
    let note = match &authority {
        Authority::Override { justification } => {
            format!("reassigned to {to} (override by {by}: {justification})")
        }
        Authority::Approver | Authority::Operator => format!("reassigned to {to}"),
    };
    approval.state = ApprovalState::Reassigned;
    approval.decisions.push(Decision {
        by,
        approve: false,
        comment,
        at: now,
        as_approver: None,
        note: Some(note),
    });
    next.requested_at = now;
    attempt.approvals.push(next);
    effects.push(Effect::RequestApproval { stage, kind });
    Ok(())
}

/// Who a reassignment may choose.
struct Choice<'a> {
    /// The stage's approver list, when the choice is limited to it (`None`: an override).
    listed: Option<&'a [String]>,
    /// The known users who may approve.
    candidates: &'a [Candidate],
    creator: &'a str,
    allow_creator: bool,
    /// The approval's current approvers (not offered again).
    taken: &'a [String],
    /// Who reassigns (not offered to themselves).
    by: &'a str,
}

impl Choice<'_> {
    /// Whether `c` may be handed the approval: not the creator (unless the stage allows the
    /// creator) and, in person, listed by the stage by name or through a group.
    fn may(&self, c: &Candidate) -> bool {
        (c.name != self.creator || self.allow_creator)
            && self
                .listed
                .is_none_or(|listed| listed.iter().any(|a| names(a, &c.name, &c.groups)))
    }

    /// The members of group `group` who may be handed it.
    fn members<'c>(&'c self, group: &'c str) -> impl Iterator<Item = &'c Candidate> + 'c {
        self.candidates
            .iter()
            .filter(move |c| c.groups.iter().any(|g| g == group) && self.may(c))
    }

    /// Refuses a `to` nobody could decide for, with who may be chosen instead.
    fn check(&self, to: &str) -> Result<(), InvalidTransition> {
        let refuse = |why: String| {
            Err(InvalidTransition::Ineligible(format!(
                "{to} may not be handed this approval: {why}; {}",
                self.eligible()
            )))
        };
        match to.strip_prefix("group:") {
            Some(_) if self.listed.is_some_and(|l| !l.iter().any(|a| a == to)) => {
                refuse("the stage does not list this group".into())
            }
            Some(group) if self.members(group).next().is_none() => {
                refuse("no known user in this group may approve it".into())
            }
            Some(_) => Ok(()),
            None => match self.candidates.iter().find(|c| c.name == to) {
                None => refuse(
                    "it is not a known user who may approve (a user in sluice.toml with the \
                     approver role)"
                        .into(),
                ),
                Some(_) if to == self.creator && !self.allow_creator => refuse(
                    "they created this release and the stage does not allow the release \
                     creator to approve"
                        .into(),
                ),
                Some(c) if !self.may(c) => refuse(
                    "they are not an approver of this stage, by name or through a group".into(),
                ),
                Some(_) => Ok(()),
            },
        }
    }

    /// "choose one of: …" — the users and groups that may be chosen, or why there are none.
    fn eligible(&self) -> String {
        let open = |name: &String| !self.taken.contains(name) && name != self.by;
        let mut names: Vec<String> = self
            .candidates
            .iter()
            .filter(|c| self.may(c) && open(&c.name))
            .map(|c| c.name.clone())
            .collect();
        names.sort();
        let mut groups: Vec<String> = match self.listed {
            Some(listed) => listed
                .iter()
                .filter(|a| a.starts_with("group:"))
                .cloned()
                .collect(),
            None => self
                .candidates
                .iter()
                .flat_map(|c| c.groups.iter().map(|g| format!("group:{g}")))
                .collect(),
        };
        groups.sort();
        groups.dedup();
        groups.retain(|g| open(g) && self.members(&g["group:".len()..]).next().is_some());
        names.extend(groups);
        if names.is_empty() {
            return "nobody else may be chosen: add a user with the approver role to sluice.toml \
                    (and list them on the stage), or ask an admin to override"
                .into();
        }
        let more = names.len().saturating_sub(SHOWN);
        names.truncate(SHOWN);
        let mut list = format!("choose one of: {}", names.join(", "));
        if more > 0 {
            list.push_str(&format!(" and {more} more"));
        }
        list
    }
}
