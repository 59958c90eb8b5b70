//! Deployments at a time: scheduled by an operator, by a stage's cron schedule, and held by
//! freeze windows (and let through by breaking glass).

use super::*;

#[test]
fn an_operator_schedules_a_deployment_and_nothing_is_asked_before_its_time() {
    let mut r = release(
        r#"
version = 1
name = "s"
[[stages]]
name = "prod"
after = "manual"
pre-approval = { approvers = ["alice"] }
[[stages.tasks]]
plugin = "/p/t.wasm"
"#,
    );
    event(&mut r, Event::Created);
    let at = NOW + 60_000;
    let effects = event(
        &mut r,
        Event::Schedule {
            stage: "prod".into(),
            at,
        },
    );
    assert_eq!(state(&r, "prod"), StageState::Scheduled);
    let attempt = &r.stage("prod").unwrap().attempts[0];
    assert_eq!(attempt.deferred_until, Some(at));
    assert!(
        attempt.approvals.is_empty(),
        "nothing asked before its time"
    );
    assert!(matches!(
        effects[..],
        [Effect::Timer { at: t, event: Event::Due { .. } }] if t == at
    ));
    // At its time, the deployment starts as any other: here, its pre-approval.
    let effects = apply(
        &mut r,
        Event::Due {
            stage: "prod".into(),
            attempt: 1,
        },
        at,
    )
    .unwrap();
    assert_eq!(state(&r, "prod"), StageState::AwaitingApproval);
    assert!(matches!(effects[..], [Effect::RequestApproval { .. }]));
    // A time already past deploys now.
    let mut r2 = release(
        r#"
version = 1
name = "s"
[[stages]]
name = "prod"
after = "manual"
[[stages.tasks]]
plugin = "/p/t.wasm"
"#,
    );
    event(&mut r2, Event::Created);
    event(
        &mut r2,
        Event::Schedule {
            stage: "prod".into(),
            at: NOW - 1,
        },
    );
    assert_eq!(state(&r2, "prod"), StageState::InProgress);
}

#[test]
fn a_scheduled_stage_waits_for_its_cron_time_in_its_zone_across_daylight_saving() {
    let pipeline = r#"
version = 1
name = "nightly"
[[stages]]
name = "qa"
[[stages.tasks]]
plugin = "/p/t.wasm"
[[stages]]
name = "prod"
after = ["qa"]
schedule = { cron = "0 9 * * *", time-zone = "Europe/Berlin" }
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;
    // Europe/Berlin moves to summer time at 02:00 on 2026-03-29: 09:00 is 08:00 UTC before,
    // 07:00 UTC after. The fake clock is the time each event arrives with.
    let cases = [
        ("2026-03-28T06:00:00Z", "2026-03-28T08:00:00Z"), // the same morning, winter time
        ("2026-03-28T10:00:00Z", "2026-03-29T07:00:00Z"), // next morning, summer time
        ("2026-10-24T10:00:00Z", "2026-10-25T08:00:00Z"), // back to winter time
    ];
    for (now, expected) in cases {
        let now = at(now);
        let mut r = release(pipeline);
        apply(&mut r, Event::Created, now).unwrap();
        apply(&mut r, prepared("qa"), now).unwrap();
        let effects = apply(&mut r, finished("qa", 0, ok()), now).unwrap();
        assert_eq!(state(&r, "prod"), StageState::Scheduled);
        let attempt = &r.stage("prod").unwrap().attempts[0];
        assert_eq!(attempt.deferred_until, Some(at(expected)), "from {now}");
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::Timer { at: t, .. } if *t == at(expected)))
        );
        // At that time it starts.
        apply(
            &mut r,
            Event::Due {
                stage: "prod".into(),
                attempt: 1,
            },
            at(expected),
        )
        .unwrap();
        assert_eq!(state(&r, "prod"), StageState::InProgress);
    }
}

pub(super) const FROZEN: &str = r#"
version = 1
name = "web"
[[freezes]]
reason = "weekend"
cron = "0 18 * * 5"
duration = "63h"
time-zone = "Europe/Berlin"
[[freezes]]
reason = "holidays"
stages = ["prod"]
from = "2026-12-24T00:00:00+01:00"
until = "2026-12-27T00:00:00+01:00"
[[stages]]
name = "prod"
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;

fn due(r: &mut Release, now: u64) -> Result<Vec<Effect>, InvalidTransition> {
    let attempt = r.stage("prod").unwrap().attempts.last().unwrap().number;
    apply(
        r,
        Event::Due {
            stage: "prod".into(),
            attempt,
        },
        now,
    )
}

#[test]
fn a_deployment_due_in_a_freeze_waits_until_it_ends_on_the_zones_wall_clock() {
    // Saturday noon in Berlin, inside the weekend freeze (Friday 18:00 + 63 h = Monday 09:00).
    let mut r = release(FROZEN);
    apply(&mut r, Event::Created, at("2026-11-21T11:00:00Z")).unwrap();
    let attempt = r.stage("prod").unwrap().attempts[0].clone();
    assert_eq!(attempt.state, StageState::Scheduled);
    assert_eq!(attempt.frozen.as_deref(), Some("weekend"));
    assert_eq!(attempt.deferred_until, Some(at("2026-11-23T08:00:00Z")));
    // Its end comes: it deploys.
    due(&mut r, at("2026-11-23T08:00:00Z")).unwrap();
    assert_eq!(state(&r, "prod"), StageState::InProgress);
    // Before the freeze starts, nothing waits.
    let mut r = release(FROZEN);
    apply(&mut r, Event::Created, at("2026-11-20T16:59:00Z")).unwrap();
    assert_eq!(state(&r, "prod"), StageState::InProgress);
    // Windows back to back (the holidays run into a weekend) are waited out together.
    let mut r = release(FROZEN);
    apply(&mut r, Event::Created, at("2026-12-25T12:00:00Z")).unwrap();
    let attempt = &r.stage("prod").unwrap().attempts[0];
    assert_eq!(attempt.frozen.as_deref(), Some("holidays"));
    assert_eq!(attempt.deferred_until, Some(at("2026-12-28T08:00:00Z")));
}

#[test]
fn an_admin_breaks_glass_with_a_justification_and_the_deployment_goes_now() {
    let mut r = release(FROZEN);
    let saturday = at("2026-11-21T11:00:00Z");
    apply(&mut r, Event::Created, saturday).unwrap();
    let glass = |justification: &str| Event::BreakGlass {
        stage: "prod".into(),
        by: "ada".into(),
        justification: justification.into(),
    };
    assert!(matches!(
        apply(&mut r, glass("  "), saturday),
        Err(InvalidTransition::NotAllowed(_))
    ));
    let effects = apply(&mut r, glass("security fix for CVE-2026-1"), saturday).unwrap();
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "prod".into(),
            attempt: 1
        }]
    );
    let attempt = &r.stage("prod").unwrap().attempts[0];
    assert_eq!(attempt.state, StageState::InProgress);
    let glass_record = attempt.break_glass.clone().unwrap();
    assert_eq!(
        (glass_record.by.as_str(), glass_record.at),
        ("ada", saturday)
    );
    // Nothing is frozen now: breaking glass again is a conflict, and the freeze's timer, when
    // it comes, finds nothing to start.
    assert!(matches!(
        apply(&mut r, glass("again"), saturday),
        Err(InvalidTransition::Conflict(_))
    ));
    assert!(due(&mut r, at("2026-11-23T08:00:00Z")).is_err());
}

#[test]
fn a_freeze_timer_fires_once_when_the_wall_clock_steps_back_or_forward() {
    let mut r = release(FROZEN);
    apply(&mut r, Event::Created, at("2026-11-21T11:00:00Z")).unwrap();
    let end = at("2026-11-23T08:00:00Z");
    // The timer (a monotonic wait) ends while the wall clock, stepped back an hour, still
    // reads inside the freeze: the deployment waits on, to the same end.
    let effects = due(&mut r, end - 3_600_000).unwrap();
    assert_eq!(state(&r, "prod"), StageState::Scheduled);
    assert!(effects.contains(&Effect::Timer {
        at: end,
        event: Event::Due {
            stage: "prod".into(),
            attempt: 1
        }
    }));
    // Then it fires past the end (the clock stepped forward meanwhile): it starts, once.
    due(&mut r, end + 7_200_000).unwrap();
    assert_eq!(state(&r, "prod"), StageState::InProgress);
    assert!(
        due(&mut r, end + 7_200_000).is_err(),
        "a second firing starts nothing"
    );
    assert_eq!(r.stage("prod").unwrap().attempts.len(), 1);
}
