//! Time at its bounds: the longest durations the parsers accept, run through a release at the
//! latest time jiff holds, and a plan stored before the bound (durations of `Duration::MAX`)
//! whose deadlines saturate to "never" (`u64::MAX`) instead of panicking or wrapping.

use std::time::Duration;

use super::*;
use crate::pipeline::FreezeWindow;
use crate::types::{MAX_DURATION, millis};

/// Every duration of a stage at the longest the parsers accept (100 years).
const LONGEST: &str = r#"
version = 1
name = "web"
[[freezes]]
reason = "a century"
cron = "0 18 * * 5"
time-zone = "UTC"
duration = "876000h"
[[stages]]
name = "prod"
pre-approval = { approvers = ["alice"], timeout = "876000h" }
post-approval = { approvers = ["alice"], timeout = "3153600000000ms" }
[[stages.tasks]]
plugin = "/p/t.wasm"
timeout = "52560000m"
[stages.pre-gates]
approvals = "after-gates"
delay = "876000h"
interval = "3153600000s"
timeout = "876000h"
min-healthy = "876000h"
[[stages.pre-gates.gates]]
name = "health"
plugin = "http-check"
config = { url = "http://127.0.0.1:9/health" }
grants.hosts = ["127.0.0.1:9"]
"#;

/// Applies `e` at `now`, and words it for the audit trail (which must not panic either).
fn at_time(r: &mut Release, e: Event, now: u64) -> Vec<Effect> {
    let _ = e.describe(r);
    apply(r, e, now).unwrap_or_else(|e| panic!("{e}"))
}

fn the_gates(r: &Release) -> &GateRun {
    &r.stage("prod").unwrap().attempts[0].gates[0]
}

fn the_approval(r: &Release, kind: ApprovalKind) -> &Approval {
    let attempt = &r.stage("prod").unwrap().attempts[0];
    attempt.approvals.iter().find(|a| a.kind == kind).unwrap()
}

#[test]
fn the_longest_durations_run_through_a_release_at_the_end_of_time_without_overflow() {
    let longest = millis(MAX_DURATION);
    let end = u64::try_from(jiff::Timestamp::MAX.as_millisecond()).unwrap();
    let mut r = release(LONGEST);
    at_time(&mut r, Event::Created, end);
    // The gates first: their deadline and first sample a century past jiff's last day.
    let run = the_gates(&r);
    assert_eq!((run.deadline, run.next_at), (end + longest, end + longest));
    let (sample, now) = evaluated(ApprovalKind::Pre, end + longest, true);
    at_time(&mut r, sample, now);
    let run = the_gates(&r);
    assert_eq!(run.state, GateState::Failed, "healthy for 0s of a century");
    // Asked after the gates (whatever they said): it expires another century on.
    assert_eq!(state(&r, "prod"), StageState::AwaitingApproval);
    let pre = the_approval(&r, ApprovalKind::Pre);
    assert_eq!(pre.expires_at, Some(now + longest));
    let effects = at_time(&mut r, decide("prod", "alice", true), now);
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Prepare { .. })),
        "{effects:?}"
    );
    at_time(&mut r, prepared("prod"), now);
    at_time(&mut r, finished("prod", 0, ok()), now);
    let post = the_approval(&r, ApprovalKind::Post);
    assert_eq!(post.expires_at, Some(now + longest));
    at_time(
        &mut r,
        decide_kind("prod", ApprovalKind::Post, "alice", true),
        now,
    );
    assert_eq!(r.state, ReleaseState::Succeeded);
    // Deferring to the last millisecond a u64 holds waits on it; nothing is added to it.
    let mut r = release(LONGEST);
    at_time(&mut r, Event::Created, end);
    let (sample, now) = evaluated(ApprovalKind::Pre, end + longest, true);
    at_time(&mut r, sample, now);
    let effects = at_time(
        &mut r,
        deferred(decide("prod", "alice", true), u64::MAX),
        now,
    );
    assert!(matches!(
        effects[..],
        [Effect::Timer {
            at: u64::MAX,
            event: Event::Due { .. }
        }]
    ));
    let due = Event::Due {
        stage: "prod".into(),
        attempt: 1,
    };
    at_time(&mut r, due, u64::MAX);
    assert_eq!(state(&r, "prod"), StageState::InProgress);
    let schedule = Event::Schedule {
        stage: "prod".into(),
        at: u64::MAX,
    };
    assert!(
        schedule
            .describe(&r)
            .contains("18446744073709551615 (Unix ms)")
    );
}

#[test]
fn a_plan_stored_before_the_bound_saturates_its_deadlines_to_never() {
    // Friday 19:00 UTC: inside the weekly freeze, whose duration is now `Duration::MAX`.
    let friday = at("2026-12-04T19:00:00Z");
    let mut r = release(LONGEST);
    let spec = &mut r.plan.stages[0];
    spec.pre_approval.as_mut().unwrap().timeout = Some(Duration::MAX);
    spec.post_approval.as_mut().unwrap().timeout = Some(Duration::MAX);
    let gates = spec.pre_gates.as_mut().unwrap();
    gates.delay = Duration::MAX;
    gates.interval = Duration::MAX;
    gates.timeout = Duration::MAX;
    gates.min_healthy = Duration::MAX;
    gates.approvals = crate::pipeline::ApprovalOrder::BeforeGates;
    let FreezeWindow::Recurring { duration, .. } = &mut r.plan.freezes[0].window else {
        panic!("a recurring freeze");
    };
    *duration = Duration::MAX;
    assert_eq!(
        r.plan.frozen_until("prod", friday).map(|f| f.0),
        Some(u64::MAX)
    );

    at_time(&mut r, Event::Created, friday);
    let pre = the_approval(&r, ApprovalKind::Pre);
    assert_eq!(pre.expires_at, Some(u64::MAX), "never expires");
    at_time(&mut r, decide("prod", "alice", true), friday);
    let run = the_gates(&r);
    assert_eq!((run.deadline, run.next_at), (u64::MAX, u64::MAX), "never");
    // A sample that comes anyway (a clock far off) at the end of time: the deadline passed.
    let (sample, now) = evaluated(ApprovalKind::Pre, u64::MAX, false);
    at_time(&mut r, sample, now);
    assert_eq!(the_gates(&r).state, GateState::Failed);
    assert_eq!(state(&r, "prod"), StageState::Failed);
}
