//! Reassigning an approval and deciding it late: the four-eyes rule cannot be handed away,
//! the new approver must be one the stage lists, and a decision after the deadline is refused.

use super::*;

#[test]
fn reassign_hands_an_approvers_part_to_someone_else() {
    // bob approves through group ops; dave, in ops too, may be handed bob's part.
    let mut r = release(&APPROVALS.replace(r#"["alice", "bob"]"#, r#"["alice", "group:ops"]"#));
    event(&mut r, Event::Created);
    let reassign = reassigning("bob", &["ops"], "dave", &["ops"], Authority::Approver);
    let err = apply(
        &mut r,
        {
            let mut by_mallory = reassign.clone();
            if let Event::Reassign { by, groups, .. } = &mut by_mallory {
                *by = "mallory".into();
                groups.clear();
            }
            by_mallory
        },
        NOW,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not an approver"), "{err}");
    event(&mut r, reassign);
    let attempt = &r.stage("staging").unwrap().attempts[0];
    assert_eq!(attempt.approvals[0].state, ApprovalState::Reassigned);
    assert_eq!(attempt.approvals[1].approvers, ["alice", "dave"]);
    assert!(
        apply(
            &mut r,
            in_groups(decide("staging", "bob", true), &["ops"]),
            NOW
        )
        .is_err()
    );
    event(&mut r, decide("staging", "alice", true));
    assert_eq!(
        event(&mut r, decide("staging", "dave", true)),
        [Effect::Prepare {
            stage: "staging".into(),
            attempt: 1
        }]
    );
}

fn candidate(name: &str, groups: &[&str]) -> Candidate {
    Candidate {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// `by` (in `groups`) hands the staging pre-deployment approval to `to` (in `to_groups`). The
/// known users who may approve: `to` (unless a group), alice, bob, erin (in ops) and frank (in
/// approvers).
fn reassigning(
    by: &str,
    groups: &[&str],
    to: &str,
    to_groups: &[&str],
    authority: Authority,
) -> Event {
    let strings = |v: &[&str]| v.iter().map(|g| g.to_string()).collect();
    Event::Reassign {
        stage: "staging".into(),
        attempt: 1,
        kind: ApprovalKind::Pre,
        by: by.into(),
        groups: strings(groups),
        to: to.into(),
        candidates: cast(to, to_groups),
        comment: "on leave".into(),
        authority,
    }
}

fn cast(to: &str, to_groups: &[&str]) -> Vec<Candidate> {
    let mut cast = vec![
        candidate("alice", &[]),
        candidate("bob", &[]),
        candidate("erin", &["ops"]),
        candidate("frank", &["approvers"]),
    ];
    if !to.starts_with("group:") {
        cast.retain(|c| c.name != to);
        cast.push(candidate(to, to_groups));
    }
    cast
}

/// `e` with `candidates` as the known users who may approve.
fn known(mut e: Event, only: Vec<Candidate>) -> Event {
    if let Event::Reassign { candidates, .. } = &mut e {
        *candidates = only;
    }
    e
}

fn in_groups(mut e: Event, of: &[&str]) -> Event {
    if let Event::Decide { groups, .. } = &mut e {
        *groups = of.iter().map(|g| g.to_string()).collect();
    }
    e
}

/// Applies `e`, which must be refused with a message containing `why` and change nothing.
fn refused(r: &mut Release, e: Event, now: u64, why: &str) -> InvalidTransition {
    let before = r.clone();
    let err = apply(r, e, now).unwrap_err();
    assert!(err.to_string().contains(why), "{err}");
    assert_eq!(*r, before, "a refused event changed the release");
    err
}

/// staging's pre-deployment approval lists the creator (carol) and the group approvers.
fn creator_listed(allow_creator: bool) -> Release {
    let mut r = release(&format!(
        r#"
version = 1
[[stages]]
name = "staging"
pre-approval = {{ approvers = ["carol", "group:approvers"], allow-release-creator = {allow_creator} }}
[[stages.tasks]]
plugin = "copy"
"#
    ));
    event(&mut r, Event::Created);
    r
}

#[test]
fn the_creator_may_not_hand_their_approval_away() {
    let mut r = creator_listed(false);
    // Not to an outsider, and not to an approver the stage lists either: the creator does not
    // choose who approves their release.
    for (to, to_groups) in [("mallory", &[][..]), ("bob", &["approvers"][..])] {
        let carol = reassigning("carol", &[], to, to_groups, Authority::Approver);
        let err = refused(&mut r, carol, NOW, "created this release");
        assert!(matches!(err, InvalidTransition::NotAllowed(_)), "{err}");
        assert!(err.to_string().contains("override"), "{err}");
    }
    let approval = &r.stage("staging").unwrap().attempts[0].approvals;
    assert_eq!(approval.len(), 1);
    assert_eq!(approval[0].state, ApprovalState::Pending);
    refused(
        &mut r,
        decide("staging", "mallory", true),
        NOW,
        "not an approver",
    );

    // A stage that allows the creator lets them hand it on, to someone it lists.
    let mut r = creator_listed(true);
    let to_mallory = reassigning("carol", &[], "mallory", &[], Authority::Approver);
    refused(
        &mut r,
        to_mallory,
        NOW,
        "mallory may not be handed this approval",
    );
    let to_bob = reassigning("carol", &[], "bob", &["approvers"], Authority::Approver);
    event(&mut r, to_bob);
    let attempt = &r.stage("staging").unwrap().attempts[0];
    assert_eq!(attempt.approvals[1].approvers, ["bob", "group:approvers"]);
}

#[test]
fn reassign_only_to_someone_the_stage_lists() {
    let mut r = release(APPROVALS);
    event(&mut r, Event::Created);
    for (to, to_groups, why) in [
        ("dave", &[][..], "they are not an approver of this stage"),
        (
            "dave",
            &["approvers"][..],
            "they are not an approver of this stage",
        ),
        ("group:ops", &[][..], "the stage does not list this group"),
        ("carol", &[][..], "they created this release"),
    ] {
        let bob = reassigning("bob", &[], to, to_groups, Authority::Approver);
        let err = refused(&mut r, bob, NOW, why);
        assert!(matches!(err, InvalidTransition::Ineligible(_)), "{err}");
        // alice and bob, the only users it lists, are its approvers already.
        assert!(
            err.to_string().contains("nobody else may be chosen"),
            "{err}"
        );
    }
    // Listed through a group, the creator is still not eligible; the others are named.
    let mut r =
        release(&APPROVALS.replace(r#"["alice", "bob"]"#, r#"["alice", "group:approvers"]"#));
    event(&mut r, Event::Created);
    let bob = reassigning(
        "bob",
        &["approvers"],
        "carol",
        &["approvers"],
        Authority::Approver,
    );
    let err = refused(&mut r, bob, NOW, "carol may not be handed this approval");
    assert!(
        err.to_string().contains("approve; choose one of: frank"),
        "{err}"
    );
}

#[test]
fn reassign_to_a_name_nobody_could_decide_for_is_refused_naming_who_may_be_chosen() {
    let mut r = release(&APPROVALS.replace(r#"["alice", "bob"]"#, r#"["alice", "group:ops"]"#));
    event(&mut r, Event::Created);
    let before = r.clone();
    // Not a known user who may approve (a stranger, a viewer, a typo): refused in person and
    // on an admin's override alike, since either would strand the approval.
    for authority in [Authority::Approver, admin()] {
        let stranger = known(
            reassigning("alice", &[], "nobody-at-all", &[], authority.clone()),
            cast("group:none", &[]),
        );
        let err = refused(
            &mut r,
            stranger,
            NOW,
            "nobody-at-all may not be handed this approval: it is not a known user who may approve",
        );
        assert!(matches!(err, InvalidTransition::Ineligible(_)), "{err}");
        // Not alice herself, nor an approver it has already (group:ops).
        let named = match authority {
            Authority::Approver => "; choose one of: erin",
            _ => "; choose one of: bob, erin, frank, group:approvers",
        };
        assert!(err.to_string().ends_with(named), "{err}");
    }
    // A group with no known member who may approve: refused too.
    let empty = known(
        reassigning("ada", &[], "group:approvers", &[], admin()),
        vec![candidate("alice", &[])],
    );
    refused(
        &mut r,
        empty,
        NOW,
        "no known user in this group may approve it",
    );
    // Nobody at all may approve: the answer says what to do.
    let alone = known(
        reassigning("alice", &[], "dave", &[], Authority::Approver),
        vec![],
    );
    refused(
        &mut r,
        alone,
        NOW,
        "nobody else may be chosen: add a user with the approver role",
    );
    // Many who may: the list is bounded.
    let many: Vec<Candidate> = (0..30)
        .map(|n| candidate(&format!("u{n:02}"), &[]))
        .collect();
    let crowd = known(reassigning("ada", &[], "zed", &[], admin()), many);
    let err = refused(&mut r, crowd, NOW, "and 10 more");
    assert!(err.to_string().contains("u19 and 10 more"), "{err}");
    assert_eq!(r, before);
}

#[test]
fn reassign_to_someone_listed_by_name_or_through_a_group() {
    let mut r = release(&APPROVALS.replace(r#"["alice", "bob"]"#, r#"["alice", "group:ops"]"#));
    event(&mut r, Event::Created);
    // dave is in ops: eligible through the group.
    event(
        &mut r,
        reassigning("alice", &[], "dave", &["ops"], Authority::Approver),
    );
    // An admin hands the approval to mallory, listed nowhere; mallory may hand it only to
    // someone the stage lists: alice by name, or the group.
    event(&mut r, reassigning("ada", &[], "mallory", &[], admin()));
    let to_erin = reassigning("mallory", &[], "erin", &[], Authority::Approver);
    refused(&mut r, to_erin, NOW, "erin may not be handed this approval");
    event(
        &mut r,
        reassigning("mallory", &[], "alice", &[], Authority::Approver),
    );
    let attempt = &r.stage("staging").unwrap().attempts[0];
    let approvers: Vec<&[String]> = attempt.approvals.iter().map(|a| &a.approvers[..]).collect();
    assert_eq!(
        approvers,
        [
            &["alice", "group:ops"][..],
            &["dave", "group:ops"][..],
            &["mallory"][..],
            &["alice"][..]
        ]
    );
    event(
        &mut r,
        reassigning("alice", &[], "group:ops", &[], Authority::Approver),
    );
    assert_eq!(
        event(&mut r, in_groups(decide("staging", "erin", true), &["ops"])),
        [Effect::Prepare {
            stage: "staging".into(),
            attempt: 1
        }]
    );
}

#[test]
fn an_admin_override_may_reassign_to_anyone_who_may_approve() {
    let mut r = creator_listed(false);
    for to in ["mallory", "group:ops"] {
        let before = r.stage("staging").unwrap().attempts[0].approvals.len();
        event(&mut r, reassigning("ada", &[], to, &[], admin()));
        let attempt = &r.stage("staging").unwrap().attempts[0];
        assert_eq!(attempt.approvals.len(), before + 1);
        assert_eq!(attempt.approvals.last().unwrap().approvers, [to]);
    }
    // Not to the creator, whom the stage does not allow to approve, nor to a group nobody
    // known is in: either would strand it.
    refused(
        &mut r,
        reassigning("ada", &[], "carol", &[], admin()),
        NOW,
        "they created this release",
    );
    refused(
        &mut r,
        reassigning("ada", &[], "group:anyone", &[], admin()),
        NOW,
        "no known user in this group may approve it",
    );
    event(&mut r, reassigning("ada", &[], "mallory", &[], admin()));
    assert_eq!(
        event(&mut r, decide("staging", "mallory", true)),
        [Effect::Prepare {
            stage: "staging".into(),
            attempt: 1
        }]
    );
}

#[test]
fn a_decision_at_or_after_the_deadline_is_refused_and_the_timer_expires_it() {
    let timed = APPROVALS.replace(r#"policy = "all" }"#, r#"policy = "all", timeout = "1h" }"#);
    let deadline = NOW + 3_600_000;
    for late in [deadline, deadline + 1, deadline + 3_600_000] {
        let mut r = release(&timed);
        event(&mut r, Event::Created);
        for e in [
            decide("staging", "alice", true),
            decide("staging", "bob", false),
            overriding(decide("staging", "ada", true)),
        ] {
            let err = refused(&mut r, e, late, "expired at 1970-01-01T01:00:01Z");
            assert!(matches!(err, InvalidTransition::Conflict(_)), "{err}");
        }
        apply(
            &mut r,
            Event::Expire {
                stage: "staging".into(),
                attempt: 1,
                kind: ApprovalKind::Pre,
            },
            late,
        )
        .unwrap();
        let approval = &r.stage("staging").unwrap().attempts[0].approvals[0];
        assert_eq!(approval.state, ApprovalState::Expired);
        assert!(approval.decisions.is_empty());
    }
    // A millisecond before, it applies.
    let mut r = release(&timed);
    event(&mut r, Event::Created);
    apply(&mut r, decide("staging", "alice", true), deadline - 1).unwrap();
    let effects = apply(&mut r, decide("staging", "bob", true), deadline - 1).unwrap();
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "staging".into(),
            attempt: 1
        }]
    );
}
