//! The indexes' tests: rows move with the record (a release going active -> succeeded, a
//! rewrite leaves nothing stale), list paging
//! (newest first, filters, offset, totals), approvals paging. Migration: `index_migrate_tests`;
//! the audit trail by release and rewrites within one batch: `index_batch_tests`; counts and
//! rows against a recount after random transitions: `index_prop_tests`.

use std::path::Path;

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
        lease: None,
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

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(super) fn save(rt: &tokio::runtime::Runtime, store: &Store, release: &mut Release) {
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
