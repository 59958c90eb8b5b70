//! Counts and index rows equal a recount from the records after a random sequence of
//! transitions (releases created in two pipelines, states, attempts and approvals changed),
//! with reads (which apply the rows that wait) and crashes (which lose them: the next open
//! indexes them from the trail) among them, and again after a reopen.

use proptest::prelude::*;

use super::faulty::{FaultPlan, PowerLoss};
use super::index_tests::{approval, attempt, create, names, plan, runtime, save};
use super::summary::{approval_label, release_label, stage_label};
use super::*;
use crate::core::{ApprovalState, Attempt, Release, ReleaseState, StageState};

/// One change to a release in a random sequence.
#[derive(Debug, Clone)]
enum Change {
    Create(usize),
    Release(usize, ReleaseState),
    Stage(usize, usize, StageState, bool),
    Approval(usize, usize, ApprovalState, bool),
    /// A list read.
    Read,
    /// The machine stops, and the store is opened again.
    Crash,
}

fn change() -> impl Strategy<Value = Change> {
    let release = prop::sample::select(vec![
        ReleaseState::Active,
        ReleaseState::Succeeded,
        ReleaseState::Failed,
        ReleaseState::Abandoned,
    ]);
    let stage = prop::sample::select(vec![
        StageState::Queued,
        StageState::AwaitingApproval,
        StageState::InProgress,
        StageState::Succeeded,
        StageState::PartiallySucceeded,
        StageState::Failed,
        StageState::Canceled,
    ]);
    let approval = prop::sample::select(vec![
        ApprovalState::Pending,
        ApprovalState::Approved,
        ApprovalState::Rejected,
        ApprovalState::Reassigned,
        ApprovalState::Expired,
    ]);
    prop_oneof![
        (0..2usize).prop_map(Change::Create),
        (0..8usize, release).prop_map(|(r, s)| Change::Release(r, s)),
        (0..8usize, 0..2usize, stage, any::<bool>())
            .prop_map(|(r, i, s, n)| Change::Stage(r, i, s, n)),
        (0..8usize, 0..2usize, approval, any::<bool>())
            .prop_map(|(r, i, s, n)| Change::Approval(r, i, s, n)),
        Just(Change::Read),
        Just(Change::Crash),
    ]
}

/// Recounts everything from the records and compares it with what the indexes say.
pub(super) fn check_against_a_recount(store: &Store) {
    let releases = store.releases().unwrap();
    let mut want = StateCounts::default();
    for r in &releases {
        *want
            .releases
            .entry(release_label(r.state).into())
            .or_default() += 1;
        for s in &r.stages {
            *want
                .deployments
                .entry(stage_label(s.state()).into())
                .or_default() += 1;
        }
        for a in approvals_of(r) {
            *want
                .approvals
                .entry(approval_label(a.approval.state).into())
                .or_default() += 1;
        }
    }
    assert_eq!(store.state_counts().unwrap(), want);
    let newest = |r: &&Release| (!r.created_at, !r.number, r.name.clone());
    for pipeline in [None, Some("web"), Some("api")] {
        for state in [None, Some(ReleaseState::Active), Some(ReleaseState::Failed)] {
            let mut expected: Vec<&Release> = releases
                .iter()
                .filter(|r| pipeline.is_none_or(|p| r.pipeline == p))
                .filter(|r| state.is_none_or(|s| r.state == s))
                .collect();
            expected.sort_by_key(newest);
            let page = store.release_page(pipeline, state, 0, usize::MAX).unwrap();
            let got: Vec<&str> = names(&page);
            let expected: Vec<&str> = expected.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(got, expected, "{pipeline:?} {state:?}");
            assert_eq!(page.total as usize, expected.len());
        }
    }
    for state in [ApprovalState::Pending, ApprovalState::Approved] {
        let mut expected: Vec<(u64, u64, String, String)> = releases
            .iter()
            .flat_map(|r| approvals_of(r).map(move |a| (r, a)))
            .filter(|(_, a)| a.approval.state == state)
            .map(|(r, a)| (!r.created_at, !r.number, a.release.clone(), a.id))
            .collect();
        expected.sort();
        let page = store
            .approval_page(Some(state), 0, usize::MAX, None)
            .unwrap();
        let got: Vec<&str> = page.approvals.iter().map(|a| a.id.as_str()).collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want_ids: Vec<&str> = expected.iter().map(|e| e.3.as_str()).collect();
        want_ids.sort();
        assert_eq!(
            got_sorted, want_ids,
            "{state:?}: no stale row, none missing"
        );
        assert_eq!(page.total as usize, want_ids.len());
    }
    for (pipeline, stage) in [("web", "qa"), ("web", "prod"), ("api", "qa")] {
        let expected = releases
            .iter()
            .filter(|r| r.pipeline == pipeline && r.state != ReleaseState::Abandoned)
            .filter_map(|r| {
                let a = r.stage(stage)?.attempts.last()?;
                matches!(
                    a.state,
                    StageState::Succeeded | StageState::PartiallySucceeded
                )
                .then_some((!a.finished_at?, r.name.clone()))
            })
            .min()
            .map(|(_, name)| name);
        assert_eq!(store.last_good(pipeline, stage, "").unwrap(), expected);
    }
    let active: Vec<String> = store
        .active_releases(None)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    let mut expected: Vec<&Release> = releases
        .iter()
        .filter(|r| r.state == ReleaseState::Active)
        .collect();
    expected.sort_by_key(newest);
    let expected: Vec<String> = expected.into_iter().map(|r| r.name.clone()).collect();
    assert_eq!(active, expected);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn counts_and_rows_equal_a_recount_after_random_transitions(
        changes in prop::collection::vec(change(), 1..40)
    ) {
        let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
        let mut faults = FaultPlan::new();
        let mut store = Store::open_faulty(dir.path(), &faults).unwrap();
        let plans = [plan("web"), plan("api")];
        let mut releases = vec![create(&store, &plans[0], 1)];
        for (at, change) in (2u64..).zip(changes) {
            let pick = i_of(&change) % releases.len();
            match change {
                Change::Create(p) => {
                    // Two releases share a time now and then: the name breaks the tie.
                    releases.push(create(&store, &plans[p], at / 2));
                    continue;
                }
                Change::Read => {
                    store.release_page(None, None, 0, 1).unwrap();
                    continue;
                }
                Change::Crash => {
                    faults.crash_at_io(1);
                    drop(store);
                    faults.power_loss(PowerLoss::DropUnsynced).unwrap();
                    faults = FaultPlan::new();
                    store = Store::open_faulty(dir.path(), &faults).unwrap();
                    continue;
                }
                Change::Release(_, state) => releases[pick].state = state,
                Change::Stage(_, s, state, new) => {
                    let stage = &mut releases[pick].stages[s];
                    match stage.attempts.last_mut() {
                        Some(last) if !new => *last = Attempt {
                            approvals: std::mem::take(&mut last.approvals),
                            ..attempt(last.number, state, at)
                        },
                        _ => {
                            let n = stage.attempts.len() as u32 + 1;
                            stage.attempts.push(attempt(n, state, at));
                        }
                    }
                }
                Change::Approval(_, s, state, new) => {
                    let stage = &mut releases[pick].stages[s];
                    if stage.attempts.is_empty() {
                        stage.attempts.push(attempt(1, StageState::AwaitingApproval, at));
                    }
                    let last = stage.attempts.last_mut().unwrap();
                    match last.approvals.last_mut() {
                        Some(a) if !new => a.state = state,
                        _ => last.approvals.push(approval(state, at)),
                    }
                }
            }
            save(&rt, &store, &mut releases[pick]);
        }
        check_against_a_recount(&store);
        // Reopened: the same.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        check_against_a_recount(&store);
    }
}

fn i_of(change: &Change) -> usize {
    match change {
        Change::Create(_) | Change::Read | Change::Crash => 0,
        Change::Release(i, _) | Change::Stage(i, ..) | Change::Approval(i, ..) => *i,
    }
}
