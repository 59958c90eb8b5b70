//! The indexes' tests: rows move with the record (a release going active -> succeeded, a
//! rewrite leaves nothing stale), counts equal a recount after random transitions, list paging
//! (newest first, filters, offset, totals), approvals paging, and migrating a version-1 store.

use std::path::Path;

use proptest::prelude::*;

use super::summary::{approval_label, release_label, stage_label};
use super::*;
use crate::core::{
    Approval, ApprovalKind, ApprovalState, Attempt, Release, ReleaseState, StageState,
};
use crate::pipeline::{ApprovalPolicy, Plan};

const PIPELINE: &str = r#"
version = 1
name = "NAME"
[[stages]]
name = "qa"
[[stages.tasks]]
plugin = "/p/t.wasm"
[[stages]]
name = "prod"
after = ["qa"]
[[stages.tasks]]
plugin = "/p/t.wasm"
"#;

pub(super) fn plan(name: &str) -> Plan {
    let source = PIPELINE.replace("NAME", name);
    crate::pipeline::parse("p.toml", &source, Path::new("/p"), name)
        .unwrap_or_else(|e| panic!("{e}"))
        .plan
}

pub(super) fn made(plan: &Plan, number: u64, created_at: u64) -> Release {
    Release::new(crate::core::NewRelease {
        plan: plan.clone(),
        number,
        creator: "rita".into(),
        description: None,
        artifacts: vec![],
        variables: vec![],
        digests: vec![],
        created_at,
    })
}

pub(super) fn create(store: &Store, plan: &Plan, created_at: u64) -> Release {
    store
        .create_release(&plan.name, "rita", |n| made(plan, n, created_at), None)
        .unwrap()
}

pub(super) fn attempt(number: u32, state: StageState, at: u64) -> Attempt {
    Attempt {
        number,
        state,
        prepared: false,
        tasks: vec![],
        approvals: vec![],
        outcome: None,
        reason: None,
        started_at: at,
        finished_at: state.is_terminal().then_some(at),
        deferred_until: None,
        gates: vec![],
        rollback_of: None,
        frozen: None,
        break_glass: None,
        out_of_order: None,
    }
}

pub(super) fn approval(state: ApprovalState, at: u64) -> Approval {
    Approval {
        kind: ApprovalKind::Pre,
        state,
        approvers: vec!["alice".into()],
        policy: ApprovalPolicy::Any,
        decisions: vec![],
        requested_at: at,
        expires_at: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn save(rt: &tokio::runtime::Runtime, store: &Store, release: &mut Release) {
    release.revision += 1;
    rt.block_on(store.save(release, "engine", "changed", None, None))
        .unwrap();
}

pub(super) fn names(page: &SummaryPage) -> Vec<&str> {
    page.releases.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn a_release_that_succeeds_moves_from_the_active_rows_to_the_succeeded_ones() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let store = Store::open(dir.path()).unwrap();
    let web = plan("web");
    let mut r = create(&store, &web, 10);
    let active = Some(ReleaseState::Active);
    assert_eq!(
        names(&store.release_page(None, active, 0, 10).unwrap()),
        ["web-1"]
    );
    assert_eq!(store.active_releases(Some("web")).unwrap().len(), 1);
    r.stages[0]
        .attempts
        .push(attempt(1, StageState::InProgress, 20));
    save(&rt, &store, &mut r);
    assert!(store.deployments_in_progress().unwrap());
    r.stages[0].attempts[0] = attempt(1, StageState::Succeeded, 30);
    r.state = ReleaseState::Succeeded;
    save(&rt, &store, &mut r);
    assert!(!store.deployments_in_progress().unwrap());
    let page = store.release_page(None, active, 0, 10).unwrap();
    assert_eq!((page.releases.len(), page.total), (0, 0));
    assert!(store.active_releases(None).unwrap().is_empty());
    let done = store
        .release_page(Some("web"), Some(ReleaseState::Succeeded), 0, 10)
        .unwrap();
    assert_eq!((names(&done), done.total), (vec!["web-1"], 1));
    assert_eq!(done.releases[0].stages[0].state, StageState::Succeeded);
    let counts = store.state_counts().unwrap();
    assert_eq!(counts.releases.get("active"), None);
    assert_eq!(counts.releases.get("succeeded"), Some(&1));
    assert_eq!(counts.deployments.get("succeeded"), Some(&1));
    assert_eq!(counts.deployments.get("not-started"), Some(&1));
    assert_eq!(
        store.last_good("web", "qa", "web-9").unwrap().as_deref(),
        Some("web-1")
    );
    assert_eq!(store.last_good("web", "qa", "web-1").unwrap(), None);
    assert_eq!(store.last_good("web", "prod", "web-9").unwrap(), None);
}

#[test]
fn lists_page_newest_first_with_filters_offsets_and_totals() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let store = Store::open(dir.path()).unwrap();
    let (web, api) = (plan("web"), plan("api"));
    // web-1..5 at 10..50, api-1..3 at 15, 25, 35; web-2 and api-2 fail.
    let mut web2 = None;
    for n in 1..=5 {
        let r = create(&store, &web, 10 * n);
        if n == 2 {
            web2 = Some(r);
        }
    }
    for n in 1..=3 {
        let mut r = create(&store, &api, 10 * n + 5);
        if n == 2 {
            r.state = ReleaseState::Failed;
            save(&rt, &store, &mut r);
        }
    }
    let mut web2 = web2.unwrap();
    web2.state = ReleaseState::Failed;
    save(&rt, &store, &mut web2);
    let all = store.release_page(None, None, 0, 100).unwrap();
    assert_eq!(
        names(&all),
        [
            "web-5", "web-4", "api-3", "web-3", "api-2", "web-2", "api-1", "web-1"
        ]
    );
    assert_eq!(all.total, 8);
    let page = store.release_page(None, None, 2, 3).unwrap();
    assert_eq!(
        (names(&page), page.total),
        (vec!["api-3", "web-3", "api-2"], 8)
    );
    let past = store.release_page(None, None, 50, 3).unwrap();
    assert_eq!((past.releases.len(), past.total), (0, 8));
    let web_page = store.release_page(Some("web"), None, 1, 2).unwrap();
    assert_eq!(
        (names(&web_page), web_page.total),
        (vec!["web-4", "web-3"], 5)
    );
    let failed = store
        .release_page(None, Some(ReleaseState::Failed), 0, 10)
        .unwrap();
    assert_eq!((names(&failed), failed.total), (vec!["api-2", "web-2"], 2));
    let web_active = store
        .release_page(Some("web"), Some(ReleaseState::Active), 1, 10)
        .unwrap();
    assert_eq!(
        (names(&web_active), web_active.total),
        (vec!["web-4", "web-3", "web-1"], 4)
    );
    let none = store.release_page(Some("nope"), None, 0, 10).unwrap();
    assert_eq!((none.releases.len(), none.total), (0, 0));
    // A pipeline whose name starts another's is not mixed in.
    let we = plan("we");
    create(&store, &we, 99);
    assert_eq!(
        store.release_page(Some("we"), None, 0, 10).unwrap().total,
        1
    );
    assert_eq!(store.active_releases(Some("web")).unwrap().len(), 4);
}

#[test]
fn approvals_page_by_state_and_a_rewrite_leaves_no_stale_row() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let store = Store::open(dir.path()).unwrap();
    let web = plan("web");
    let mut releases: Vec<Release> = (1..=4).map(|n| create(&store, &web, n * 10)).collect();
    for r in &mut releases {
        let mut a = attempt(1, StageState::AwaitingApproval, 5);
        a.approvals.push(approval(ApprovalState::Pending, 5));
        r.stages[0].attempts.push(a);
        save(&rt, &store, r);
    }
    let pending = Some(ApprovalState::Pending);
    assert_eq!(store.approval_page(pending, 0, 10, None).unwrap().total, 4);
    // Three are approved (one decision each: the row's content changes with the state).
    for r in &mut releases[..3] {
        r.stages[0].attempts[0].approvals[0].state = ApprovalState::Approved;
        r.stages[0].attempts[0].state = StageState::InProgress;
        save(&rt, &store, r);
    }
    let approved = Some(ApprovalState::Approved);
    let page = store.approval_page(approved, 1, 1, None).unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(page.approvals.len(), 1);
    assert_eq!(page.approvals[0].id, "web-2.qa.1.pre");
    assert_eq!(page.approvals[0].approval.state, ApprovalState::Approved);
    let ids = |p: &ApprovalPage| p.approvals.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    let all = store.approval_page(approved, 0, 10, None).unwrap();
    assert_eq!(
        ids(&all),
        ["web-3.qa.1.pre", "web-2.qa.1.pre", "web-1.qa.1.pre"]
    );
    let still = store.approval_page(pending, 0, 10, None).unwrap();
    assert_eq!(
        (ids(&still), still.total),
        (vec!["web-4.qa.1.pre".to_owned()], 1)
    );
    // A filter decodes the rows and counts only what it keeps.
    let only_two: &dyn Fn(&ApprovalView) -> bool = &|a| a.release == "web-2";
    let filtered = store
        .approval_page(approved, 0, 10, Some(only_two))
        .unwrap();
    assert_eq!(
        (ids(&filtered), filtered.total),
        (vec!["web-2.qa.1.pre".to_owned()], 1)
    );
    // Any state: every row, once.
    assert_eq!(
        store
            .approval_page(None, 0, 100, None)
            .unwrap()
            .approvals
            .len(),
        4
    );
    // A decision that does not change the state still rewrites the row's content.
    releases[3].stages[0].attempts[0].approvals[0]
        .decisions
        .push(crate::core::Decision {
            by: "bob".into(),
            approve: true,
            comment: "looks good".into(),
            at: 7,
            as_approver: None,
            note: None,
        });
    save(&rt, &store, &mut releases[3]);
    let seen = store.approval_page(pending, 0, 10, None).unwrap();
    assert_eq!(seen.approvals[0].approval.decisions.len(), 1);
    let counts = store.state_counts().unwrap();
    assert_eq!(counts.approvals.get("approved"), Some(&3));
    assert_eq!(counts.approvals.get("pending"), Some(&1));
    assert_eq!(counts.deployments.get("in-progress"), Some(&3));
}

#[test]
fn the_audit_trail_of_one_release_is_read_through_its_index() {
    let (dir, rt) = (tempfile::tempdir().unwrap(), runtime());
    let store = Store::open(dir.path()).unwrap();
    let web = plan("web");
    let mut a = create(&store, &web, 1);
    let mut b = create(&store, &web, 2);
    for _ in 0..300 {
        save(&rt, &store, &mut b);
    }
    for _ in 0..3 {
        save(&rt, &store, &mut a);
    }
    store.record_refusal("mallory", "refused").unwrap();
    let latest = store.audit_latest(Some("web-1"), 2).unwrap();
    let seqs: Vec<u64> = latest.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [303, 304]);
    assert_eq!(latest.next, 306);
    let forward = store
        .audit_forward(1, Some("web-1"), 10, usize::MAX)
        .unwrap();
    let seqs: Vec<u64> = forward.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [302, 303, 304]);
    assert_eq!(
        forward.next, 306,
        "no more of its entries: the end of the trail"
    );
    let page = store
        .audit_forward(0, Some("web-2"), 5, usize::MAX)
        .unwrap();
    assert_eq!(page.entries.len(), 5);
    assert_eq!(page.next, page.entries[4].seq + 1);
    assert!(page.entries.iter().all(|e| e.release == "web-2"));
    assert_eq!(store.audit_latest_start(Some("web-1"), 3).unwrap(), 302);
    assert_eq!(store.audit_latest_start(Some("web-1"), 9).unwrap(), 0);
}

/// One change to a release in a random sequence.
#[derive(Debug, Clone)]
enum Change {
    Create(usize),
    Release(usize, ReleaseState),
    Stage(usize, usize, StageState, bool),
    Approval(usize, usize, ApprovalState, bool),
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
    ]
}

/// Recounts everything from the records and compares it with what the indexes say.
fn check_against_a_recount(store: &Store) {
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
        let store = Store::open(dir.path()).unwrap();
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
        Change::Create(_) => 0,
        Change::Release(i, _) | Change::Stage(i, ..) | Change::Approval(i, ..) => *i,
    }
}
