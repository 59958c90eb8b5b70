//! The transition table of `machine/mod.rs`, as a test. `ROWS` names, for a fixture release in
//! each stage state, every event that applies and what it leads to; the sweep applies every other
//! event to every fixture and expects an [`InvalidTransition`] that leaves the release as it was.
//! A transition added without its row fails the sweep; a row deleted fails it too.

mod states;

use super::*;
use states::{EVENTS, FIXTURES, event_for, fixture};

use StageState::*;

/// Fixture, event -> the first stage's state after, and the kinds of the effects, in order.
type Row = (
    &'static str,
    &'static str,
    StageState,
    &'static [&'static str],
);

const FAILED: &str = "Finished(Failed)";
const ABANDONED: &str = "Finished(Abandoned)";
const CANCEL: &[&str] = &["CancelTasks", FAILED];
const ABANDON: &[&str] = &["CancelTasks", ABANDONED];

/// The table of `machine/mod.rs`, row by row, for every fixture.
#[rustfmt::skip]
const ROWS: &[Row] = &[
    // A new release: Created starts the stages that start with it.
    ("new",                 "created",          InProgress,         &["Prepare"]),
    ("new",                 "deploy",           InProgress,         &["Prepare"]),
    ("new",                 "deploy-out-of-order", InProgress,      &["Prepare"]),
    ("new",                 "schedule",         Scheduled,          &["Timer(Due)"]),
    ("new",                 "schedule-past",    InProgress,         &["Prepare"]),
    ("new",                 "rollback",         InProgress,         &["Prepare"]),
    ("new",                 "abandon",          NotStarted,         &[ABANDONED]),
    // Not started (a manual stage): deploy, schedule, roll back.
    ("not-started",         "created",          NotStarted,         &[]),
    ("not-started",         "deploy",           InProgress,         &["Prepare"]),
    ("not-started",         "deploy-out-of-order", InProgress,      &["Prepare"]),
    ("not-started",         "schedule",         Scheduled,          &["Timer(Due)"]),
    ("not-started",         "schedule-past",    InProgress,         &["Prepare"]),
    ("not-started",         "rollback",         InProgress,         &["Prepare"]),
    ("not-started",         "abandon",          NotStarted,         &[ABANDONED]),
    // Queued: its turn, or a newer release instead.
    ("queued",              "created",          Queued,             &[]),
    ("queued",              "admit",            AwaitingApproval,   &["RequestApproval(pre)"]),
    ("queued",              "supersede",        Skipped,            &[ABANDONED]),
    ("queued",              "cancel",           Canceled,           CANCEL),
    ("queued",              "abandon",          Canceled,           ABANDON),
    // Scheduled by an operator: at its time, as a deploy.
    ("scheduled",           "created",          Scheduled,          &[]),
    ("scheduled",           "due",              InProgress,         &["Prepare"]),
    ("scheduled",           "cancel",           Canceled,           CANCEL),
    ("scheduled",           "abandon",          Canceled,           ABANDON),
    // Held by a freeze: due while it holds, it waits again; breaking glass deploys now.
    ("frozen",              "created",          Scheduled,          &[]),
    ("frozen",              "due",              Scheduled,          &["Timer(Due)"]),
    ("frozen",              "break-glass",      InProgress,         &["Prepare"]),
    ("frozen",              "cancel",           Canceled,           CANCEL),
    ("frozen",              "abandon",          Canceled,           ABANDON),
    // A pre-deployment approval (alice and bob) with no decision yet. (`reassign` is an
    // admin's override; an approver's to someone unlisted, or the creator's, is refused.)
    ("awaiting-pre",        "created",          AwaitingApproval,   &[]),
    ("awaiting-pre",        "approve",          AwaitingApproval,   &[]),
    ("awaiting-pre",        "approve-deferred", AwaitingApproval,   &[]),
    ("awaiting-pre",        "reject",           Rejected,           &[FAILED]),
    ("awaiting-pre",        "reassign",         AwaitingApproval,   &["RequestApproval(pre)"]),
    ("awaiting-pre",        "expire",           Rejected,           &[FAILED]),
    ("awaiting-pre",        "void",             Failed,             &[FAILED]),
    ("awaiting-pre",        "cancel",           Canceled,           CANCEL),
    ("awaiting-pre",        "abandon",          Canceled,           ABANDON),
    // The same, bob approved: alice's approval meets the policy.
    ("awaiting-pre-half",   "created",          AwaitingApproval,   &[]),
    ("awaiting-pre-half",   "approve",          InProgress,         &["Prepare"]),
    ("awaiting-pre-half",   "approve-deferred", Scheduled,          &["Timer(Due)"]),
    ("awaiting-pre-half",   "reject",           Rejected,           &[FAILED]),
    ("awaiting-pre-half",   "reassign",         AwaitingApproval,   &["RequestApproval(pre)"]),
    ("awaiting-pre-half",   "expire",           Rejected,           &[FAILED]),
    ("awaiting-pre-half",   "void",             Failed,             &[FAILED]),
    ("awaiting-pre-half",   "cancel",           Canceled,           CANCEL),
    ("awaiting-pre-half",   "abandon",          Canceled,           ABANDON),
    // Approved, deferred to a time.
    ("deferred",            "created",          Scheduled,          &[]),
    ("deferred",            "due",              InProgress,         &["Prepare"]),
    ("deferred",            "cancel",           Canceled,           CANCEL),
    ("deferred",            "abandon",          Canceled,           ABANDON),
    // In progress, the workspace not ready yet.
    ("preparing",           "created",          InProgress,         &[]),
    ("preparing",           "prepared",         InProgress,         &["RunTask"]),
    ("preparing",           "prepare-failed",   Failed,             &[FAILED]),
    ("preparing",           "cancel",           Canceled,           CANCEL),
    ("preparing",           "abandon",          Canceled,           ABANDON),
    // Task 0 of 2 running.
    ("running",             "created",          InProgress,         &[]),
    ("running",             "task-ok",          InProgress,         &["RunTask"]),
    ("running",             "task-failed",      Failed,             &[FAILED]),
    ("running",             "task-interrupted", Failed,             &[FAILED]),
    ("running",             "task-restarted",   InProgress,         &["RunTask"]),
    ("running",             "cancel",           Canceled,           CANCEL),
    ("running",             "abandon",          Canceled,           ABANDON),
    // The last task (continue-on-error) running.
    ("running-last",        "created",          InProgress,         &[]),
    ("running-last",        "task-ok",          Succeeded,          &["Finished(Succeeded)"]),
    ("running-last",        "task-failed",      PartiallySucceeded, &["Finished(PartiallySucceeded)"]),
    ("running-last",        "task-interrupted", Failed,             &[FAILED]),
    ("running-last",        "task-restarted",   InProgress,         &["RunTask"]),
    ("running-last",        "cancel",           Canceled,           CANCEL),
    ("running-last",        "abandon",          Canceled,           ABANDON),
    // The last task running, a post-deployment approval to come.
    ("running-before-post", "created",          InProgress,         &[]),
    ("running-before-post", "task-ok",          AwaitingApproval,   &["RequestApproval(post)"]),
    ("running-before-post", "task-failed",      Failed,             &[FAILED]),
    ("running-before-post", "task-interrupted", Failed,             &[FAILED]),
    ("running-before-post", "task-restarted",   InProgress,         &["RunTask"]),
    ("running-before-post", "cancel",           Canceled,           CANCEL),
    ("running-before-post", "abandon",          Canceled,           ABANDON),
    // The post-deployment approval (alice).
    ("awaiting-post",       "created",          AwaitingApproval,   &[]),
    ("awaiting-post",       "approve-post",     Succeeded,          &["Finished(Succeeded)"]),
    ("awaiting-post",       "void",             Failed,             &[FAILED]),
    ("awaiting-post",       "cancel",           Canceled,           CANCEL),
    ("awaiting-post",       "abandon",          Canceled,           ABANDON),
    // Pre-deployment gates, before their timeout: sampled again until they pass.
    ("gates",               "created",          EvaluatingGates,    &[]),
    ("gates",               "gates-healthy",    InProgress,         &["Prepare"]),
    ("gates",               "gates-unhealthy",  EvaluatingGates,    &["EvaluateGates"]),
    ("gates",               "cancel",           Canceled,           CANCEL),
    ("gates",               "abandon",          Canceled,           ABANDON),
    // The same at their timeout: unhealthy fails.
    ("gates-late",          "created",          EvaluatingGates,    &[]),
    ("gates-late",          "gates-healthy",    InProgress,         &["Prepare"]),
    ("gates-late",          "gates-unhealthy",  Failed,             &[FAILED]),
    ("gates-late",          "cancel",           Canceled,           CANCEL),
    ("gates-late",          "abandon",          Canceled,           ABANDON),
    // Post-deployment gates that roll back, at their timeout.
    ("post-gates-late",     "created",          EvaluatingGates,    &[]),
    ("post-gates-late",     "gates-healthy",    Succeeded,          &["Finished(Succeeded)"]),
    ("post-gates-late",     "gates-unhealthy",  Failed,             &["Rollback", FAILED]),
    ("post-gates-late",     "cancel",           Canceled,           CANCEL),
    ("post-gates-late",     "abandon",          Canceled,           ABANDON),
    // Scheduled by an operator on a stage with a queue: at its time, it queues.
    ("scheduled-in-queue",  "created",          Scheduled,          &[]),
    ("scheduled-in-queue",  "due",              Queued,             &[]),
    ("scheduled-in-queue",  "cancel",           Canceled,           CANCEL),
    ("scheduled-in-queue",  "abandon",          Canceled,           ABANDON),
    // Gates with the approval after them, at their timeout: passed or failed, alice decides.
    ("gates-then-approval-late", "created",     EvaluatingGates,    &[]),
    ("gates-then-approval-late", "gates-healthy", AwaitingApproval, &["RequestApproval(pre)"]),
    ("gates-then-approval-late", "gates-unhealthy", AwaitingApproval, &["RequestApproval(pre)"]),
    ("gates-then-approval-late", "cancel",      Canceled,           CANCEL),
    ("gates-then-approval-late", "abandon",     Canceled,           ABANDON),
    // qa's last task, prod after it on a cron schedule: qa's success schedules prod.
    ("running-before-cron", "created",          InProgress,         &[]),
    ("running-before-cron", "task-ok",          Succeeded,          &["Timer(Due)"]),
    ("running-before-cron", "task-failed",      Failed,             &[FAILED]),
    ("running-before-cron", "task-interrupted", Failed,             &[FAILED]),
    ("running-before-cron", "task-restarted",   InProgress,         &["RunTask"]),
    ("running-before-cron", "cancel",           Canceled,           CANCEL),
    ("running-before-cron", "abandon",          Canceled,           ABANDON),
    // Terminal: a new attempt reopens the release.
    ("succeeded",           "created",          Succeeded,          &[]),
    ("succeeded",           "deploy",           InProgress,         &["Prepare"]),
    ("succeeded",           "deploy-out-of-order", InProgress,      &["Prepare"]),
    ("succeeded",           "schedule",         Scheduled,          &["Timer(Due)"]),
    ("succeeded",           "schedule-past",    InProgress,         &["Prepare"]),
    ("succeeded",           "rollback",         InProgress,         &["Prepare"]),
    ("succeeded",           "abandon",          Succeeded,          &[ABANDONED]),
    ("failed",              "created",          Failed,             &[]),
    ("failed",              "deploy",           InProgress,         &["Prepare"]),
    ("failed",              "deploy-out-of-order", InProgress,      &["Prepare"]),
    ("failed",              "schedule",         Scheduled,          &["Timer(Due)"]),
    ("failed",              "schedule-past",    InProgress,         &["Prepare"]),
    ("failed",              "rollback",         InProgress,         &["Prepare"]),
    ("failed",              "abandon",          Failed,             &[ABANDONED]),
    // Canceled while queued: a new attempt, a rollback too, queues for its turn.
    ("canceled-in-queue",   "created",          Canceled,           &[]),
    ("canceled-in-queue",   "deploy",           Queued,             &[]),
    ("canceled-in-queue",   "deploy-out-of-order", Queued,          &[]),
    ("canceled-in-queue",   "schedule",         Scheduled,          &["Timer(Due)"]),
    ("canceled-in-queue",   "schedule-past",    Queued,             &[]),
    ("canceled-in-queue",   "rollback",         Queued,             &[]),
    ("canceled-in-queue",   "abandon",          Canceled,           &[ABANDONED]),
    // Succeeded before a freeze that holds now: a new attempt, a rollback too, waits it out.
    ("succeeded-before-freeze", "created",      Succeeded,          &[]),
    ("succeeded-before-freeze", "deploy",       Scheduled,          &["Timer(Due)"]),
    ("succeeded-before-freeze", "deploy-out-of-order", Scheduled,   &["Timer(Due)"]),
    ("succeeded-before-freeze", "schedule",     Scheduled,          &["Timer(Due)"]),
    ("succeeded-before-freeze", "schedule-past", Scheduled,         &["Timer(Due)"]),
    ("succeeded-before-freeze", "rollback",     Scheduled,          &["Timer(Due)"]),
    ("succeeded-before-freeze", "abandon",      Succeeded,          &[ABANDONED]),
    // On an agent of pool `eu`: queued for one (nothing to fetch: assigned, the first task
    // starts on it); running on it; lost (an idempotent task queued again, any other fails).
    ("pooled-queued",       "created",          InProgress,         &[]),
    ("pooled-queued",       "assigned",         InProgress,         &["RunTask"]),
    ("pooled-queued",       "prepare-failed",   Failed,             &[FAILED]),
    ("pooled-queued",       "cancel",           Canceled,           CANCEL),
    ("pooled-queued",       "abandon",          Canceled,           ABANDON),
    ("pooled-running",      "created",          InProgress,         &[]),
    ("pooled-running",      "task-ok",          InProgress,         &["RunTask"]),
    ("pooled-running",      "task-failed",      Failed,             &[FAILED]),
    ("pooled-running",      "task-interrupted", Failed,             &[FAILED]),
    ("pooled-running",      "task-restarted",   InProgress,         &["RunTask"]),
    ("pooled-running",      "agent-lost",       Failed,             &[FAILED]),
    ("pooled-running",      "cancel",           Canceled,           CANCEL),
    ("pooled-running",      "abandon",          Canceled,           ABANDON),
    ("pooled-running-idempotent", "created",    InProgress,         &[]),
    ("pooled-running-idempotent", "task-ok",    InProgress,         &["RunTask"]),
    ("pooled-running-idempotent", "task-failed", Failed,            &[FAILED]),
    ("pooled-running-idempotent", "task-interrupted", Failed,       &[FAILED]),
    ("pooled-running-idempotent", "task-restarted", InProgress,     &["RunTask"]),
    ("pooled-running-idempotent", "agent-lost", InProgress,         &["Prepare"]),
    ("pooled-running-idempotent", "cancel",     Canceled,           CANCEL),
    ("pooled-running-idempotent", "abandon",    Canceled,           ABANDON),
    ("pooled-lost",         "created",          InProgress,         &[]),
    ("pooled-lost",         "assigned",         InProgress,         &["RunTask"]),
    ("pooled-lost",         "prepare-failed",   Failed,             &[FAILED]),
    ("pooled-lost",         "cancel",           Canceled,           CANCEL),
    ("pooled-lost",         "abandon",          Canceled,           ABANDON),
    // Abandoned: nothing applies.
];

/// An effect's kind, as the rows name it.
fn kind(effect: &Effect) -> String {
    match effect {
        Effect::RequestApproval { kind, .. } => format!("RequestApproval({})", kind.as_str()),
        Effect::Prepare { .. } => "Prepare".into(),
        Effect::RunTask { .. } => "RunTask".into(),
        Effect::EvaluateGates { .. } => "EvaluateGates".into(),
        Effect::Rollback { .. } => "Rollback".into(),
        Effect::CancelTasks { .. } => "CancelTasks".into(),
        Effect::Timer {
            event: Event::Due { .. },
            ..
        } => "Timer(Due)".into(),
        Effect::Timer {
            event: Event::Expire { .. },
            ..
        } => "Timer(Expire)".into(),
        Effect::Timer { event, .. } => format!("Timer({event:?})"),
        Effect::Finished(state) => format!("Finished({state:?})"),
    }
}

#[test]
fn every_row_names_a_fixture_and_an_event_once() {
    for (i, (from, on, ..)) in ROWS.iter().enumerate() {
        assert!(
            FIXTURES.iter().any(|(n, _)| n == from),
            "row {i}: no fixture {from}"
        );
        assert!(
            EVENTS.iter().any(|(n, _)| n == on),
            "row {i}: no event {on}"
        );
        let again = ROWS[..i].iter().any(|(f, o, ..)| (f, o) == (from, on));
        assert!(!again, "row {i}: ({from}, {on}) is listed twice");
    }
}

#[test]
fn every_row_of_the_table_applies_as_it_says() {
    for (from, on, to, effects) in ROWS {
        let (mut r, now) = fixture(from);
        let e = event_for(on, &r, now);
        let got = apply(&mut r, e, now).unwrap_or_else(|e| panic!("{from} + {on}: {e}"));
        let kinds: Vec<String> = got.iter().map(kind).collect();
        assert_eq!(
            (r.stages[0].state(), kinds),
            (*to, effects.iter().map(|k| k.to_string()).collect()),
            "{from} + {on}"
        );
    }
}

#[test]
fn every_event_not_in_the_table_is_invalid_and_changes_nothing() {
    let mut applied = Vec::new();
    for (from, build) in FIXTURES {
        let (before, now) = build();
        for (on, event) in EVENTS {
            if ROWS.iter().any(|(f, o, ..)| (f, o) == (from, on)) {
                continue;
            }
            let mut r = before.clone();
            let e = event(&r, now);
            match apply(&mut r, e, now) {
                Ok(effects) => applied.push(format!("{from} + {on} -> {effects:?}")),
                Err(_) => assert_eq!(r, before, "{from} + {on}: an invalid event changed it"),
            }
        }
    }
    assert!(
        applied.is_empty(),
        "transitions missing from ROWS:\n{}",
        applied.join("\n")
    );
}
