//! Reads through the indexes (`index.rs`): a page of release summaries newest first, with its
//! total from the counts; the active releases (all, or one pipeline's); a stage's last good
//! release; a page of approvals in a state; the counts by state. Each is one read transaction
//! and costs what it returns (plus the keys it skips for an offset), never a decode of every
//! release. Each first applies the rows that wait (`deferred.rs`): the lists and counts read
//! on when that is refused (a full disk), the others fail.

use std::collections::BTreeMap;

use super::index::{
    APPROVAL, APPROVALS, BY_PIPELINE, BY_PIPELINE_STATE, BY_STATE, BY_TIME, COUNTS, DEPLOYMENT,
    GOOD, RELEASE, SUMMARIES,
};
use super::summary::{ApprovalView, Summary, approval_label, release_label};
use super::{RELEASES, Store, StoreError, decode, storage};
use crate::core::{ApprovalState, Release, ReleaseState};

/// A page of release summaries, newest first.
#[derive(Debug, Clone)]
pub struct SummaryPage {
    /// The summaries on the page.
    pub releases: Vec<Summary>,
    /// How many releases the filter selects, on every page.
    pub total: u64,
}

/// A page of approvals.
#[derive(Debug, Clone)]
pub struct ApprovalPage {
    /// The approvals on the page.
    pub approvals: Vec<ApprovalView>,
    /// How many approvals the filter selects, on every page.
    pub total: u64,
}

/// Counts by state, as stored (kebab-case state names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Releases by state.
    pub releases: BTreeMap<String, u64>,
    /// Stage deployments (each stage's latest attempt, not-started included) by state.
    pub deployments: BTreeMap<String, u64>,
    /// Approvals by state.
    pub approvals: BTreeMap<String, u64>,
}

/// Collects up to `limit` names after skipping `offset`, from index keys whose name is the
/// last part; stops at the first key `keep` refuses (the end of a prefix).
macro_rules! page_names {
    ($range:expr, $offset:expr, $limit:expr, |$key:ident| $keep:expr, $name:expr) => {{
        let mut names = Vec::new();
        let (mut skipped, offset): (usize, usize) = (0, $offset);
        for row in $range.map_err(storage)? {
            let (k, _) = row.map_err(storage)?;
            let $key = k.value();
            if !$keep {
                break;
            }
            if skipped < offset {
                skipped += 1;
                continue;
            }
            if names.len() >= $limit {
                break;
            }
            names.push($name.to_owned());
        }
        names
    }};
}

impl Store {
    /// `limit` release summaries after `offset`, newest first (by creation time, then
    /// number), of `pipeline` and in `state` when given; the total from the counts.
    pub fn release_page(
        &self,
        pipeline: Option<&str>,
        state: Option<ReleaseState>,
        offset: usize,
        limit: usize,
    ) -> Result<SummaryPage, StoreError> {
        self.deferred.fresh_or_behind(&self.db);
        let txn = self.db.begin_read().map_err(storage)?;
        let names: Vec<String> = match (pipeline, state.map(release_label)) {
            (None, None) => {
                let table = txn.open_table(BY_TIME).map_err(storage)?;
                page_names!(
                    table.range::<(u64, u64, &str)>(..),
                    offset,
                    limit,
                    |k| true,
                    k.2
                )
            }
            (None, Some(s)) => {
                let table = txn.open_table(BY_STATE).map_err(storage)?;
                page_names!(
                    table.range((s, 0, 0, "")..),
                    offset,
                    limit,
                    |k| k.0 == s,
                    k.3
                )
            }
            (Some(p), None) => {
                let table = txn.open_table(BY_PIPELINE).map_err(storage)?;
                page_names!(
                    table.range((p, 0, 0, "")..),
                    offset,
                    limit,
                    |k| k.0 == p,
                    k.3
                )
            }
            (Some(p), Some(s)) => {
                let table = txn.open_table(BY_PIPELINE_STATE).map_err(storage)?;
                let from = (p, s, 0, 0, "");
                page_names!(
                    table.range(from..),
                    offset,
                    limit,
                    |k| k.0 == p && k.1 == s,
                    k.4
                )
            }
        };
        let summaries = txn.open_table(SUMMARIES).map_err(storage)?;
        let mut releases = Vec::with_capacity(names.len());
        for name in &names {
            if let Some(bytes) = summaries.get(name.as_str()).map_err(storage)? {
                releases.push(decode(&format!("summary of {name}"), bytes.value())?);
            }
        }
        let counts = txn.open_table(COUNTS).map_err(storage)?;
        let scope = pipeline.unwrap_or_default();
        let total = match state {
            Some(state) => counts
                .get((RELEASE, scope, release_label(state)))
                .map_err(storage)?
                .map_or(0, |v| v.value()),
            None => {
                let mut total = 0;
                for row in counts.range((RELEASE, scope, "")..).map_err(storage)? {
                    let (k, v) = row.map_err(storage)?;
                    let (kind, p, _) = k.value();
                    if kind != RELEASE || p != scope {
                        break;
                    }
                    total += v.value();
                }
                total
            }
        };
        Ok(SummaryPage { releases, total })
    }

    /// The active releases (of `pipeline`, when given), decoded: what recovery and a stage
    /// queue need. A read that fails is an error, never an empty list; a record that does not
    /// decode is quarantined and left out.
    pub fn active_releases(&self, pipeline: Option<&str>) -> Result<Vec<Release>, StoreError> {
        self.deferred.fresh(&self.db)?;
        let txn = self.db.begin_read().map_err(storage)?;
        let active = release_label(ReleaseState::Active);
        let names: Vec<String> = match pipeline {
            None => {
                let table = txn.open_table(BY_STATE).map_err(storage)?;
                let range = table.range((active, 0, 0, "")..);
                page_names!(range, 0, usize::MAX, |k| k.0 == active, k.3)
            }
            Some(p) => {
                let table = txn.open_table(BY_PIPELINE_STATE).map_err(storage)?;
                let range = table.range((p, active, 0, 0, "")..);
                page_names!(range, 0, usize::MAX, |k| k.0 == p && k.1 == active, k.4)
            }
        };
        let records = txn.open_table(RELEASES).map_err(storage)?;
        let mut out = Vec::with_capacity(names.len());
        for name in &names {
            if let Some(bytes) = records.get(name.as_str()).map_err(storage)? {
                // One that does not decode is quarantined, and the others go on.
                out.extend(self.decoded(name, bytes.value())?);
            }
        }
        Ok(out)
    }

    /// The release other than `except` that most recently succeeded (or partially) on
    /// `pipeline`'s `stage` with its latest attempt, and is not abandoned.
    pub fn last_good(
        &self,
        pipeline: &str,
        stage: &str,
        except: &str,
    ) -> Result<Option<String>, StoreError> {
        self.deferred.fresh(&self.db)?;
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(GOOD).map_err(storage)?;
        for row in table.range((pipeline, stage, 0, "")..).map_err(storage)? {
            let (k, _) = row.map_err(storage)?;
            let (p, s, _, release) = k.value();
            if p != pipeline || s != stage {
                break;
            }
            if release != except {
                return Ok(Some(release.to_owned()));
            }
        }
        Ok(None)
    }

    /// `limit` approvals after `offset` in `state` (any state when `None`), newest release
    /// first (then stage, attempt and place; for any state, grouped by state), that `keep`
    /// selects; the total counts every one `keep` selects. With `keep` = `None`, nothing but
    /// the page is decoded and the total comes from the counts.
    pub fn approval_page(
        &self,
        state: Option<ApprovalState>,
        offset: usize,
        limit: usize,
        keep: Option<&dyn Fn(&ApprovalView) -> bool>,
    ) -> Result<ApprovalPage, StoreError> {
        self.deferred.fresh_or_behind(&self.db);
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(APPROVALS).map_err(storage)?;
        let label = state.map(approval_label);
        let from = (label.unwrap_or_default(), 0, 0, "", 0, 0, 0);
        let (mut approvals, mut matched) = (Vec::new(), 0usize);
        for row in table.range(from..).map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            let key = k.value();
            if label.is_some_and(|l| key.0 != l) {
                break;
            }
            let what = || format!("approval row of {}", key.3);
            match keep {
                None => {
                    if matched < offset {
                        matched += 1;
                        continue;
                    }
                    if approvals.len() >= limit {
                        break;
                    }
                    approvals.push(decode(&what(), v.value())?);
                }
                Some(keep) => {
                    let view: ApprovalView = decode(&what(), v.value())?;
                    if !keep(&view) {
                        continue;
                    }
                    if matched >= offset && approvals.len() < limit {
                        approvals.push(view);
                    }
                    matched += 1;
                }
            }
        }
        let total = match keep {
            Some(_) => matched as u64,
            None => {
                let counts = self.state_counts_in(&txn)?;
                match label {
                    Some(l) => counts.approvals.get(l).copied().unwrap_or(0),
                    None => counts.approvals.values().sum(),
                }
            }
        };
        Ok(ApprovalPage { approvals, total })
    }

    /// Releases, deployments and approvals by state, as the counts stored with every commit
    /// say.
    pub fn state_counts(&self) -> Result<StateCounts, StoreError> {
        self.deferred.fresh_or_behind(&self.db);
        let txn = self.db.begin_read().map_err(storage)?;
        self.state_counts_in(&txn)
    }

    /// Whether any stage deployment is in progress (tasks or artifact fetches under way).
    pub fn deployments_in_progress(&self) -> Result<bool, StoreError> {
        self.deferred.fresh(&self.db)?;
        let txn = self.db.begin_read().map_err(storage)?;
        let counts = txn.open_table(COUNTS).map_err(storage)?;
        let n = counts
            .get((
                DEPLOYMENT,
                "",
                super::summary::stage_label(crate::core::StageState::InProgress),
            ))
            .map_err(storage)?
            .map_or(0, |v| v.value());
        Ok(n > 0)
    }

    fn state_counts_in(&self, txn: &redb::ReadTransaction) -> Result<StateCounts, StoreError> {
        let table = txn.open_table(COUNTS).map_err(storage)?;
        let mut counts = StateCounts::default();
        for (kind, into) in [
            (RELEASE, &mut counts.releases),
            (DEPLOYMENT, &mut counts.deployments),
            (APPROVAL, &mut counts.approvals),
        ] {
            for row in table.range((kind, "", "")..).map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let (found, pipeline, state) = k.value();
                if found != kind || !pipeline.is_empty() {
                    break;
                }
                into.insert(state.to_owned(), v.value());
            }
        }
        Ok(counts)
    }
}
