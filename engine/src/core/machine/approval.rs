//! Approvals: deciding, expiring and voiding them, who may decide (and before when), when a
//! policy is met, asking for one and carrying one over from the previous stage. Reassigning one
//! (who may hand it to whom) is `reassign.rs`.

use crate::pipeline::{ApprovalPolicy, Trigger};

use super::{
    InvalidTransition, Step, attempt_no, finish_attempt, phase, proceed, stage_index, wrong,
};
use crate::core::check_justification;
use crate::core::event::{Authority, Effect, Event, timestamp};
use crate::core::model::*;

/// Applies an approval event: `Decide`, `Expire` or `Void` (`Reassign` is `reassign.rs`'s).
pub(super) fn on(release: &mut Release, event: Event, now: u64, effects: &mut Vec<Effect>) -> Step {
    match event {
        Event::Decide {
            stage,
            attempt: number,
            kind,
            by,
            groups,
            approve,
            comment,
            authority,
            defer_until,
        } => {
            let i = stage_index(release, &stage)?;
            let creator = release.creator.clone();
            let spec = &release.plan.stages[i];
            let allow_creator = phase(spec, kind).0.is_some_and(|a| a.allow_release_creator);
            let attempt = attempt_no(release, i, number, "decide an approval")?;
            let approval = pending(attempt, &stage, kind)?;
            // Its expiry timer may not have fired yet: a decision at or after the deadline is
            // too late all the same, and the timer expires it as usual.
            if let Some(at) = approval.expires_at.filter(|&at| now >= at) {
                return Err(InvalidTransition::Conflict(format!(
                    "the {}-deployment approval expired at {}: a decision at {} is too late",
                    kind.as_str(),
                    timestamp(at),
                    timestamp(now)
                )));
            }
            let (as_approver, note) = match &authority {
                Authority::Approver => {
                    if by == creator && !allow_creator {
                        return Err(InvalidTransition::NotAllowed(format!(
                            "{by} created this release and the stage does not allow the release creator to approve"
                        )));
                    }
                    (Some(check_approver(approval, &by, &groups)?), None)
                }
                Authority::Override { justification } => {
                    check_justification("overriding the approvers", justification)
                        .map_err(InvalidTransition::NotAllowed)?;
                    let note = format!("override by {by}, for every approver: {justification}");
                    (None, Some(note))
                }
                Authority::Operator => (None, Some("local operator, for every approver".into())),
            };
            approval.decisions.push(Decision {
                by,
                approve,
                comment,
                at: now,
                as_approver,
                note,
            });
            let done = if !approve {
                approval.state = ApprovalState::Rejected;
                Some(false)
            } else if authority != Authority::Approver || policy_met(approval) {
                approval.state = ApprovalState::Approved;
                Some(true)
            } else {
                None
            };
            let deferred = defer_until.filter(|&at| at > now && kind == ApprovalKind::Pre);
            match (done, deferred) {
                (None, _) => {}
                (Some(false), _) => {
                    finish_attempt(attempt, StageState::Rejected, Some("rejected".into()), now)
                }
                (Some(true), Some(at)) => {
                    attempt.state = StageState::Scheduled;
                    attempt.deferred_until = Some(at);
                    effects.push(Effect::Timer {
                        at,
                        event: Event::Due {
                            stage: stage.clone(),
                            attempt: number,
                        },
                    });
                }
                (Some(true), None) => proceed(release, i, kind, now, effects),
            }
            Ok(())
        }
        Event::Expire {
            stage,
            attempt: number,
            kind,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, number, "expire an approval")?;
            let approval = pending(attempt, &stage, kind)?;
            approval.state = ApprovalState::Expired;
            finish_attempt(
                attempt,
                StageState::Rejected,
                Some(format!(
                    "the {}-deployment approval expired: nobody decided in time",
                    kind.as_str()
                )),
                now,
            );
            Ok(())
        }
        Event::Void {
            stage,
            attempt: number,
            reason,
        } => {
            let i = stage_index(release, &stage)?;
            let attempt = attempt_no(release, i, number, "void an approval")?;
            let Some(approval) = attempt
                .approvals
                .last_mut()
                .filter(|a| a.state == ApprovalState::Pending)
            else {
                return Err(wrong(release, i, "void an approval: none is pending"));
            };
            approval.state = ApprovalState::Canceled;
            finish_attempt(
                attempt,
                StageState::Failed,
                Some(format!("approval void: {reason}")),
                now,
            );
            Ok(())
        }
        other => unreachable!("not an approval event: {other:?}"),
    }
}

/// The attempt's pending approval of `kind`.
pub(super) fn pending<'a>(
    attempt: &'a mut Attempt,
    stage: &str,
    kind: ApprovalKind,
) -> Result<&'a mut Approval, InvalidTransition> {
    let state = attempt.state;
    attempt
        .approvals
        .last_mut()
        .filter(|a| {
            a.state == ApprovalState::Pending
                && a.kind == kind
                && state == StageState::AwaitingApproval
        })
        .ok_or_else(|| {
            InvalidTransition::Conflict(format!(
                "stage `{stage}` has no pending {}-deployment approval (it is {state:?})",
                kind.as_str()
            ))
        })
}

/// Whether the approver entry `entry` (a user or `group:name`) names `by`.
pub(super) fn names(entry: &str, by: &str, groups: &[String]) -> bool {
    match entry.strip_prefix("group:") {
        Some(group) => groups.iter().any(|g| g == group),
        None => entry == by,
    }
}

/// The approver entry `by` decides for: listed by name first, else through a group; an entry
/// nobody has approved for yet before one already satisfied.
pub(super) fn listed_as(approval: &Approval, by: &str, groups: &[String]) -> Option<String> {
    let satisfied = |a: &String| {
        approval
            .decisions
            .iter()
            .any(|d| d.approve && d.as_approver.as_ref() == Some(a))
    };
    let mut entries: Vec<&String> = approval
        .approvers
        .iter()
        .filter(|a| names(a, by, groups))
        .collect();
    entries.sort_by_key(|a| (satisfied(a), *a != by));
    entries.first().map(|a| (*a).clone())
}

/// Checks that `by` may decide now; returns the approver entry the decision counts for.
fn check_approver(
    approval: &Approval,
    by: &str,
    groups: &[String],
) -> Result<String, InvalidTransition> {
    let listed = |a: &String| names(a, by, groups);
    let Some(entry) = listed_as(approval, by, groups) else {
        return Err(InvalidTransition::NotAllowed(format!(
            "{by} is not an approver of this stage"
        )));
    };
    if approval.decisions.iter().any(|d| d.by == by) {
        return Err(InvalidTransition::Conflict(format!(
            "{by} already decided this approval"
        )));
    }
    if approval.policy == ApprovalPolicy::Sequence {
        let next = approval.approvers.get(approval.decisions.len());
        if !next.is_some_and(listed) {
            return Err(InvalidTransition::Conflict(format!(
                "approvals go in sequence; next is {}",
                next.map_or("nobody", String::as_str)
            )));
        }
        return Ok(next.cloned().unwrap_or(entry));
    }
    Ok(entry)
}

/// The effects of a pending approval: ask its approvers, and expire it at its timeout.
pub(in crate::core) fn request(stage: &str, attempt: u32, approval: &Approval) -> Vec<Effect> {
    let mut effects = vec![Effect::RequestApproval {
        stage: stage.to_owned(),
        kind: approval.kind,
    }];
    if let Some(at) = approval.expires_at {
        effects.push(Effect::Timer {
            at,
            event: Event::Expire {
                stage: stage.to_owned(),
                attempt,
                kind: approval.kind,
            },
        });
    }
    effects
}

/// Whether the approving decisions meet the policy: `all` and `sequence` need every approver
/// entry (a group counts once), `at-least N` needs N people, `any` one.
fn policy_met(approval: &Approval) -> bool {
    let approving = || {
        approval.decisions.iter().filter(|d| d.approve).filter(|d| {
            d.as_approver
                .as_ref()
                .is_some_and(|a| approval.approvers.contains(a))
        })
    };
    let distinct = |mut v: Vec<&String>| {
        v.sort();
        v.dedup();
        v.len()
    };
    match approval.policy {
        ApprovalPolicy::Any => approving().next().is_some(),
        ApprovalPolicy::All | ApprovalPolicy::Sequence => {
            distinct(approving().filter_map(|d| d.as_approver.as_ref()).collect())
                >= approval.approvers.len()
        }
        ApprovalPolicy::AtLeast(n) => distinct(approving().map(|d| &d.by).collect()) >= n as usize,
    }
}

/// Asks for the phase's approval (carried over from the previous stage if the stage says so).
pub(super) fn ask(
    release: &mut Release,
    i: usize,
    kind: ApprovalKind,
    now: u64,
    effects: &mut Vec<Effect>,
) {
    let spec = &release.plan.stages[i];
    let Some(approval_spec) = phase(spec, kind).0 else {
        return;
    };
    let stage = spec.name.clone();
    let mut approval = Approval::new(kind, approval_spec, now);
    if kind == ApprovalKind::Pre && approval_spec.skip_if_approved_in_previous_stage {
        carry_previous_approvals(release, i, &mut approval);
    }
    let Some(attempt) = release.stages[i].attempts.last_mut() else {
        return;
    };
    if approval.state == ApprovalState::Approved {
        attempt.approvals.push(approval);
        proceed(release, i, kind, now, effects);
        return;
    }
    attempt.state = StageState::AwaitingApproval;
    effects.extend(request(&stage, attempt.number, &approval));
    attempt.approvals.push(approval);
}

/// "Skip if approved in the previous stage": counts the approvals that this stage's approvers
/// gave the stages it follows (their latest attempts), and approves when that meets the policy.
fn carry_previous_approvals(release: &Release, i: usize, approval: &mut Approval) {
    let previous: Vec<&str> = match &release.plan.stages[i].trigger {
        Trigger::AfterStages { stages, .. } => stages.iter().map(String::as_str).collect(),
        _ => i
            .checked_sub(1)
            .map(|p| vec![release.plan.stages[p].name.as_str()])
            .unwrap_or_default(),
    };
    for name in previous {
        let Some(attempt) = release.stage(name).and_then(|s| s.attempts.last()) else {
            continue;
        };
        let given = attempt
            .approvals
            .iter()
            .filter(|a| a.state == ApprovalState::Approved)
            .flat_map(|a| &a.decisions)
            .filter(|d| d.approve);
        for decision in given {
            // Only a person listed here by name, or through a group listed here, carries over.
            let entry = approval
                .approvers
                .iter()
                .find(|a| **a == decision.by || decision.as_approver.as_ref() == Some(*a));
            let counted = approval.decisions.iter().any(|d| d.by == decision.by);
            if let (Some(entry), false) = (entry.cloned(), counted) {
                approval.decisions.push(Decision {
                    as_approver: Some(entry),
                    note: Some(format!("approved in previous stage `{name}`")),
                    ..decision.clone()
                });
            }
        }
    }
    if policy_met(approval) {
        approval.state = ApprovalState::Approved;
    }
}
