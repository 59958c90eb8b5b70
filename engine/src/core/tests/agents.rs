//! A stage with a pool: its job assigned to an agent (the lease and its epoch), lost, assigned
//! again; and what a restart redoes for it.

use super::*;

const POOLED: &str = r#"
version = 1
[[stages]]
name = "prod"
pool = "eu"
demands = ["region=eu"]
[[stages.tasks]]
name = "migrate"
plugin = "copy"
[[stages.tasks]]
name = "deploy"
plugin = "copy"
idempotent = true
"#;

fn assign(r: &mut Release, agent: &str) -> Vec<Effect> {
    event(
        r,
        Event::Assigned {
            stage: "prod".into(),
            attempt: 1,
            agent: agent.into(),
        },
    )
}

fn lose(r: &mut Release, epoch: u64) -> Result<Vec<Effect>, InvalidTransition> {
    let e = Event::AgentLost {
        stage: "prod".into(),
        attempt: 1,
        epoch,
    };
    apply(r, e, NOW)
}

fn attempt(r: &Release) -> &Attempt {
    r.stage("prod").unwrap().attempts.last().unwrap()
}

#[test]
fn an_idempotent_task_of_a_lost_agent_runs_again_on_the_next_with_a_new_epoch() {
    let mut r = release(POOLED);
    // Queued for an agent (the scheduler's `Prepare` dispatches the job to one): only the
    // lease holder may prepare.
    let queue = Effect::Prepare {
        stage: "prod".into(),
        attempt: 1,
    };
    assert_eq!(event(&mut r, Event::Created), [queue]);
    assert!(apply(&mut r.clone(), prepared("prod"), NOW).is_err());
    assert_eq!(assign(&mut r, "a1"), [run("prod", 0)]);
    let lease = attempt(&r).lease.clone().unwrap();
    assert_eq!((lease.agent.as_str(), lease.epoch), ("a1", 1));
    assert_eq!(attempt(&r).tasks[0].agent.as_deref(), Some("a1"));
    // Taken already: a second agent cannot take it.
    assert!(apply(&mut r.clone(), assign_event("a2"), NOW).is_err());
    assert_eq!(event(&mut r, finished("prod", 0, ok())), [run("prod", 1)]);
    // a1 is lost while running the idempotent `deploy`: queued again, from `deploy`.
    assert!(lose(&mut r.clone(), 2).is_err(), "no lease of epoch 2");
    let effects = lose(&mut r, 1).unwrap();
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "prod".into(),
            attempt: 1
        }]
    );
    assert_eq!(state(&r, "prod"), StageState::InProgress);
    assert!(attempt(&r).held_lease().is_none() && !attempt(&r).prepared);
    assert!(lose(&mut r.clone(), 1).is_err(), "lost once");
    assert_eq!(assign(&mut r, "a2"), [run("prod", 1)]);
    let a = attempt(&r);
    assert_eq!(a.lease.as_ref().map(|l| l.epoch), Some(2));
    assert_eq!(
        a.tasks[0].state,
        TaskState::Succeeded,
        "migrate is not run again"
    );
    assert_eq!(
        (a.tasks[1].starts, a.tasks[1].agent.as_deref()),
        (2, Some("a2"))
    );
    event(&mut r, finished("prod", 1, ok()));
    assert_eq!(state(&r, "prod"), StageState::Succeeded);
}

fn assign_event(agent: &str) -> Event {
    Event::Assigned {
        stage: "prod".into(),
        attempt: 1,
        agent: agent.into(),
    }
}

#[test]
fn a_task_that_is_not_idempotent_fails_with_the_agent_lost() {
    let mut r = release(POOLED);
    event(&mut r, Event::Created);
    assign(&mut r, "a1");
    lose(&mut r, 1).unwrap();
    let a = attempt(&r);
    assert_eq!(a.state, StageState::Failed);
    assert_eq!(
        a.reason.as_deref(),
        Some("agent a1 lost — redeploy to retry")
    );
    assert_eq!(a.tasks[1].state, TaskState::Skipped);
    // A redeploy is a new attempt, queued for an agent again.
    event(
        &mut r,
        Event::Deploy {
            stage: "prod".into(),
        },
    );
    assert!(attempt(&r).lease.is_none());
}

#[test]
fn with_artifacts_the_lease_holder_prepares_and_a_restart_waits_for_it() {
    let mut r = release(POOLED);
    r.artifacts.push(ChosenArtifact {
        alias: "site".into(),
        version: crate::types::Version {
            id: "1".into(),
            ..Default::default()
        },
    });
    event(&mut r, Event::Created);
    assert_eq!(assign(&mut r, "a1"), [], "the agent prepares first");
    assert!(!attempt(&r).prepared);
    // A restart now: the job goes back to the lease holder as it stands.
    let (events, effects) = recover(&r);
    assert!(events.is_empty());
    assert_eq!(
        effects,
        [Effect::Prepare {
            stage: "prod".into(),
            attempt: 1
        }]
    );
    assert_eq!(event(&mut r, prepared("prod")), [run("prod", 0)]);
    // Running on a1: a restart neither restarts nor interrupts the task; it waits for a1.
    let (events, effects) = recover(&r);
    assert!(events.is_empty());
    assert_eq!(effects, [run("prod", 0)]);
    assert_eq!(attempt(&r).tasks[0].starts, 1);
}
