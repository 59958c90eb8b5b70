//! The transition table's fixtures: a release in each stage state (with the time events reach
//! it), and every event, built for the fixture's first stage.

use super::super::admission::QUEUED;
use super::super::gates::POST_GATES;
use super::super::schedules::FROZEN;
use super::super::*;

const MINUTE: u64 = 60 * SECOND;

/// Applies `e` at `now`, which must apply.
fn then(r: &mut Release, e: Event, now: u64) {
    apply(r, e, now).unwrap_or_else(|e| panic!("{e}"));
}

/// A single task pipeline with a manual trigger: nothing starts with the release.
const MANUAL: &str = "version = 1\n[[stages]]\nname = \"hotfix\"\nafter = \"manual\"\n[[stages.tasks]]\nplugin = \"copy\"\n";

fn pre_gates() -> Release {
    gated(&PRE_GATES.replace("min-healthy = \"1m\"\n", ""))
}

/// Pre-deployment gates whose approval (alice) comes after them, passed or not.
fn approval_after_gates() -> Release {
    let gates = PRE_GATES.replace(
        "[stages.pre-gates]",
        "[stages.pre-gates]\napprovals = \"after-gates\"",
    );
    gated(&format!(
        "[stages.pre-approval]\napprovers = [\"alice\"]\n{gates}"
    ))
}

/// `qa`, then `prod` on a cron schedule.
const NIGHTLY: &str = r#"
version = 1
name = "nightly"
[[stages]]
name = "qa"
[[stages.tasks]]
plugin = "copy"
[[stages]]
name = "prod"
after = ["qa"]
schedule = { cron = "0 9 * * *", time-zone = "Europe/Berlin" }
"#;

/// Two tasks on an agent of pool `eu` (the first idempotent when `idempotent`).
fn pooled(idempotent: bool) -> Release {
    let pipeline = TWO_TASKS.replace("name = \"dev\"", "name = \"dev\"\npool = \"eu\"");
    let pipeline = if idempotent {
        pipeline.replacen(
            "plugin = \"copy\"",
            "plugin = \"copy\"\nidempotent = true",
            1,
        )
    } else {
        pipeline
    };
    let mut r = release(&pipeline);
    then(&mut r, Event::Created, NOW);
    r
}

fn assigned(r: &Release) -> Event {
    Event::Assigned {
        stage: first(r),
        attempt: attempt(r),
        agent: "a1".into(),
    }
}

/// Builds a fixture: the release, and the time events reach it.
type Build = fn() -> (Release, u64);

/// Fixtures: a release whose first stage is in a known state, and the time events reach it.
pub(super) const FIXTURES: &[(&str, Build)] = &[
    ("new", || (release(TWO_TASKS), NOW)),
    ("not-started", || {
        let mut r = release(MANUAL);
        then(&mut r, Event::Created, NOW);
        (r, NOW)
    }),
    ("queued", || {
        let mut r = release(QUEUED);
        then(&mut r, Event::Created, NOW);
        (r, NOW)
    }),
    ("scheduled", || {
        let (mut r, _) = fixture("not-started");
        let at = NOW + MINUTE;
        then(
            &mut r,
            Event::Schedule {
                stage: "hotfix".into(),
                at,
            },
            NOW,
        );
        (r, at)
    }),
    ("frozen", || {
        let saturday = at("2026-11-21T11:00:00Z");
        let mut r = release(FROZEN);
        then(&mut r, Event::Created, saturday);
        (r, saturday)
    }),
    ("awaiting-pre", || {
        let mut r = release(APPROVALS);
        then(&mut r, Event::Created, NOW);
        (r, NOW)
    }),
    ("awaiting-pre-half", || {
        let (mut r, now) = fixture("awaiting-pre");
        then(&mut r, decide("staging", "bob", true), now);
        (r, now)
    }),
    ("deferred", || {
        let (mut r, now) = fixture("awaiting-pre-half");
        then(
            &mut r,
            deferred(decide("staging", "alice", true), now + MINUTE),
            now,
        );
        (r, now + MINUTE)
    }),
    ("preparing", || {
        let mut r = release(TWO_TASKS);
        then(&mut r, Event::Created, NOW);
        (r, NOW)
    }),
    ("running", || {
        let (mut r, now) = fixture("preparing");
        then(&mut r, prepared("dev"), now);
        (r, now)
    }),
    ("running-last", || {
        let (mut r, now) = fixture("running");
        then(&mut r, finished("dev", 0, ok()), now);
        (r, now)
    }),
    ("running-before-post", || {
        let (mut r, now) = fixture("awaiting-pre-half");
        then(&mut r, decide("staging", "alice", true), now);
        then(&mut r, prepared("staging"), now);
        (r, now)
    }),
    ("awaiting-post", || {
        let (mut r, now) = fixture("running-before-post");
        then(&mut r, finished("staging", 0, ok()), now);
        (r, now)
    }),
    ("gates", || {
        let mut r = pre_gates();
        then(&mut r, Event::Created, NOW);
        (r, NOW + MINUTE)
    }),
    ("gates-late", || {
        let mut r = pre_gates();
        then(&mut r, Event::Created, NOW);
        (r, NOW + 10 * MINUTE)
    }),
    ("scheduled-in-queue", || {
        let mut r = release(&MANUAL.replace(
            "[[stages.tasks]]",
            "queue = { policy = \"sequential\" }\n[[stages.tasks]]",
        ));
        then(&mut r, Event::Created, NOW);
        let at = NOW + MINUTE;
        then(
            &mut r,
            Event::Schedule {
                stage: "hotfix".into(),
                at,
            },
            NOW,
        );
        (r, at)
    }),
    ("gates-then-approval-late", || {
        let mut r = approval_after_gates();
        then(&mut r, Event::Created, NOW);
        (r, NOW + 10 * MINUTE)
    }),
    ("running-before-cron", || {
        let now = at("2026-03-28T06:00:00Z");
        let mut r = release(NIGHTLY);
        then(&mut r, Event::Created, now);
        then(&mut r, prepared("qa"), now);
        (r, now)
    }),
    ("post-gates-late", || {
        let mut r = gated(POST_GATES);
        then(&mut r, Event::Created, NOW);
        deploy_ok(&mut r, "prod", 1);
        (r, NOW + MINUTE)
    }),
    ("succeeded", || {
        let (mut r, now) = fixture("running-last");
        then(&mut r, finished("dev", 1, ok()), now);
        (r, now)
    }),
    ("failed", || {
        let (mut r, now) = fixture("running");
        then(&mut r, finished("dev", 0, fail("boom")), now);
        (r, now)
    }),
    ("canceled-in-queue", || {
        let (mut r, now) = fixture("queued");
        then(&mut r, Event::Cancel { stage: "qa".into() }, now);
        (r, now)
    }),
    ("succeeded-before-freeze", || {
        let mut r = release(FROZEN);
        then(&mut r, Event::Created, at("2026-11-20T16:00:00Z"));
        deploy_ok(&mut r, "prod", 1);
        (r, at("2026-11-21T11:00:00Z"))
    }),
    ("pooled-queued", || (pooled(false), NOW)),
    ("pooled-running", || {
        let mut r = pooled(false);
        let e = assigned(&r);
        then(&mut r, e, NOW);
        (r, NOW)
    }),
    ("pooled-running-idempotent", || {
        let mut r = pooled(true);
        let e = assigned(&r);
        then(&mut r, e, NOW);
        (r, NOW)
    }),
    ("pooled-lost", || {
        let (mut r, now) = fixture("pooled-running-idempotent");
        let e = lost(&r);
        then(&mut r, e, now);
        (r, now)
    }),
    ("abandoned", || {
        let (mut r, now) = fixture("preparing");
        then(&mut r, Event::Abandon, now);
        (r, now)
    }),
];

/// The first stage, whose state the table follows.
fn first(r: &Release) -> String {
    r.stages[0].name.clone()
}

/// Its current attempt (1 before any).
fn attempt(r: &Release) -> u32 {
    r.stages[0].attempts.last().map_or(1, |a| a.number)
}

/// Its running task (0 if none).
fn running(r: &Release) -> usize {
    let tasks = r.stages[0].attempts.last().map(|a| &a.tasks[..]);
    tasks
        .and_then(|t| t.iter().position(|t| t.state == TaskState::Running))
        .unwrap_or(0)
}

fn decision(r: &Release, kind: ApprovalKind, approve: bool, defer: Option<u64>) -> Event {
    Event::Decide {
        stage: first(r),
        attempt: attempt(r),
        kind,
        by: "alice".into(),
        groups: vec![],
        approve,
        comment: String::new(),
        authority: Authority::Approver,
        defer_until: defer,
    }
}

/// `by` hands the first stage's pre-deployment approval to `to` (a known approver, in no group).
fn reassign(r: &Release, by: &str, to: &str, authority: Authority) -> Event {
    Event::Reassign {
        stage: first(r),
        attempt: attempt(r),
        kind: ApprovalKind::Pre,
        by: by.into(),
        groups: vec![],
        to: to.into(),
        candidates: vec![Candidate {
            name: to.into(),
            groups: vec![],
        }],
        comment: "on leave".into(),
        authority,
    }
}

fn task(r: &Release, outcome: TaskOutcome) -> Event {
    Event::TaskFinished {
        stage: first(r),
        attempt: attempt(r),
        task: running(r),
        outcome,
    }
}

/// The agent holding the first stage's lease (epoch 1 if none) is lost.
fn lost(r: &Release) -> Event {
    let lease = r.stages[0].attempts.last().and_then(|a| a.lease.as_ref());
    Event::AgentLost {
        stage: first(r),
        attempt: attempt(r),
        epoch: lease.map_or(1, |l| l.epoch),
    }
}

fn gates(r: &Release, healthy: bool) -> Event {
    let kind = r.stages[0].attempts.last().and_then(|a| a.gates.last());
    Event::GatesEvaluated {
        stage: first(r),
        attempt: attempt(r),
        kind: kind.map_or(ApprovalKind::Pre, |g| g.kind),
        results: vec![GateResult {
            gate: "health".into(),
            healthy,
            reason: None,
        }],
    }
}

/// Builds an event for a fixture's release, at its time.
type Make = fn(&Release, u64) -> Event;

/// Every event, built for a fixture's first stage (its current attempt, its running task) at
/// the fixture's time.
pub(super) const EVENTS: &[(&str, Make)] = &[
    ("created", |_, _| Event::Created),
    ("deploy", |r, _| Event::Deploy { stage: first(r) }),
    ("deploy-out-of-order", |r, _| Event::DeployOutOfOrder {
        stage: first(r),
        at: None,
        by: "ada".into(),
        justification: "hotfix".into(),
    }),
    // Refused everywhere: an override needs a justification.
    ("deploy-out-of-order-blank", |r, _| {
        Event::DeployOutOfOrder {
            stage: first(r),
            at: None,
            by: "ada".into(),
            justification: " ".into(),
        }
    }),
    ("approve-override-blank", |r, _| {
        let mut e = decision(r, ApprovalKind::Pre, true, None);
        if let Event::Decide { authority, .. } = &mut e {
            *authority = Authority::Override {
                justification: String::new(),
            };
        }
        e
    }),
    ("reassign-override-blank", |r, _| {
        let blank = Authority::Override {
            justification: "\t".into(),
        };
        reassign(r, "ada", "dave", blank)
    }),
    ("schedule", |r, now| Event::Schedule {
        stage: first(r),
        at: now + MINUTE,
    }),
    ("schedule-past", |r, now| Event::Schedule {
        stage: first(r),
        at: now - 1,
    }),
    ("approve", |r, _| decision(r, ApprovalKind::Pre, true, None)),
    ("approve-deferred", |r, now| {
        decision(r, ApprovalKind::Pre, true, Some(now + MINUTE))
    }),
    ("reject", |r, _| decision(r, ApprovalKind::Pre, false, None)),
    ("approve-post", |r, _| {
        decision(r, ApprovalKind::Post, true, None)
    }),
    ("reassign", |r, _| reassign(r, "ada", "dave", admin())),
    // Refused everywhere: dave is not listed on the stage; carol created the release.
    ("reassign-unlisted", |r, _| {
        reassign(r, "alice", "dave", Authority::Approver)
    }),
    ("reassign-by-creator", |r, _| {
        reassign(r, "carol", "bob", Authority::Approver)
    }),
    ("expire", |r, _| Event::Expire {
        stage: first(r),
        attempt: attempt(r),
        kind: ApprovalKind::Pre,
    }),
    ("void", |r, _| Event::Void {
        stage: first(r),
        attempt: attempt(r),
        reason: "plugin `copy` changed".into(),
    }),
    ("due", |r, _| Event::Due {
        stage: first(r),
        attempt: attempt(r),
    }),
    ("prepared", |r, _| Event::Prepared {
        stage: first(r),
        attempt: attempt(r),
    }),
    ("prepare-failed", |r, _| Event::PrepareFailed {
        stage: first(r),
        attempt: attempt(r),
        reason: "no such version".into(),
    }),
    ("task-ok", |r, _| task(r, ok())),
    ("task-failed", |r, _| task(r, fail("boom"))),
    ("task-interrupted", |r, _| Event::TaskInterrupted {
        stage: first(r),
        task: running(r),
    }),
    ("task-restarted", |r, _| Event::TaskRestarted {
        stage: first(r),
        task: running(r),
    }),
    ("cancel", |r, _| Event::Cancel { stage: first(r) }),
    ("abandon", |_, _| Event::Abandon),
    ("assigned", |r, _| assigned(r)),
    ("agent-lost", |r, _| lost(r)),
    ("gates-healthy", |r, _| gates(r, true)),
    ("gates-unhealthy", |r, _| gates(r, false)),
    ("rollback", |r, _| Event::Rollback {
        stage: first(r),
        of: "web-2".into(),
    }),
    ("break-glass", |r, _| Event::BreakGlass {
        stage: first(r),
        by: "ada".into(),
        justification: "security fix".into(),
    }),
    ("admit", |r, _| Event::Admit {
        stage: first(r),
        attempt: attempt(r),
    }),
    ("supersede", |r, _| Event::Supersede {
        stage: first(r),
        attempt: attempt(r),
        by: "web-9".into(),
    }),
];

pub(super) fn fixture(name: &str) -> (Release, u64) {
    let (_, build) = FIXTURES.iter().find(|(n, _)| *n == name).expect(name);
    build()
}

pub(super) fn event_for(name: &str, r: &Release, now: u64) -> Event {
    let (_, build) = EVENTS.iter().find(|(n, _)| *n == name).expect(name);
    build(r, now)
}
