//! The indexes, written in the commit of the record they index, so they are never behind it:
//! a summary per release ([`SUMMARIES`], what lists read), releases newest first (all, by
//! state, by pipeline, by pipeline and state), the releases that last succeeded on each stage
//! (a rollback's target), approvals by state (each row the approval's listed form), audit
//! entries by release, and counts by release, deployment and approval state.
//!
//! Every row is a function of the release's summary: a rewrite reads the summary it replaces,
//! removes the rows that summary had and the new one has not, and adds the new ones. So the
//! indexes say what the records say, whatever order the commits came in. Reads: `index_read.rs`.

use std::collections::BTreeMap;

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::summary::{Indexed, Summary, approval_label, release_label, stage_label};
use super::{StoreError, decode, storage};
use crate::core::{ReleaseState, StageState};

/// A release's place in a newest-first list: (`!created_at`, `!number`), so a forward range
/// is newest first.
pub(super) type Order = (u64, u64);

/// Release name -> its summary (JSON).
pub(super) const SUMMARIES: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("release_summaries");
/// Every release, newest first: (order, name).
pub(super) const BY_TIME: TableDefinition<'_, (u64, u64, &str), ()> =
    TableDefinition::new("releases_by_time");
/// (state, order, name).
pub(super) const BY_STATE: TableDefinition<'_, (&str, u64, u64, &str), ()> =
    TableDefinition::new("releases_by_state");
/// (pipeline, order, name).
pub(super) const BY_PIPELINE: TableDefinition<'_, (&str, u64, u64, &str), ()> =
    TableDefinition::new("releases_by_pipeline");
/// (pipeline, state, order, name).
pub(super) const BY_PIPELINE_STATE: TableDefinition<'_, (&str, &str, u64, u64, &str), ()> =
    TableDefinition::new("releases_by_pipeline_state");
/// (pipeline, stage, `!finished_at`, release): releases whose latest attempt on the stage
/// succeeded (or partially), not abandoned; the most recently finished first.
pub(super) const GOOD: TableDefinition<'_, (&str, &str, u64, &str), ()> =
    TableDefinition::new("stage_successes");
/// (state, order, release, stage index, attempt, position) -> the approval's view (JSON).
pub(super) const APPROVALS: TableDefinition<'_, ApprovalRow<'_>, &[u8]> =
    TableDefinition::new("approvals_by_state");
/// An approval's key: (state, order, release, stage index, attempt, position).
pub(super) type ApprovalRow<'a> = (&'a str, u64, u64, &'a str, u32, u32, u32);
/// (release, seq): the audit entries of each release.
pub(super) const AUDIT_BY_RELEASE: TableDefinition<'_, (&str, u64), ()> =
    TableDefinition::new("audit_by_release");
/// (kind, pipeline, state) -> count. Kinds: `release` (pipeline `""`: all of them),
/// `deployment` and `approval` (pipeline always `""`).
pub(super) const COUNTS: TableDefinition<'_, (&str, &str, &str), u64> =
    TableDefinition::new("state_counts");

/// The count kinds.
pub(super) const RELEASE: &str = "release";
pub(super) const DEPLOYMENT: &str = "deployment";
pub(super) const APPROVAL: &str = "approval";

/// Where `summary` goes in a newest-first list.
pub(super) fn order(summary: &Summary) -> Order {
    (!summary.created_at, !summary.number)
}

/// Creates every index table (a new store, or one being migrated).
pub(super) fn create(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(SUMMARIES).map_err(storage)?;
    txn.open_table(BY_TIME).map_err(storage)?;
    txn.open_table(BY_STATE).map_err(storage)?;
    txn.open_table(BY_PIPELINE).map_err(storage)?;
    txn.open_table(BY_PIPELINE_STATE).map_err(storage)?;
    txn.open_table(GOOD).map_err(storage)?;
    txn.open_table(APPROVALS).map_err(storage)?;
    txn.open_table(AUDIT_BY_RELEASE).map_err(storage)?;
    txn.open_table(COUNTS).map_err(storage)?;
    Ok(())
}

/// The index tables of one write transaction ([`Writer`]), each opened when first used: a
/// commit pays only for the tables it changes (most change three or four of the nine).
macro_rules! writer {
    ($($field:ident => $table:ident: $key:ty, $value:ty;)*) => {
        pub(super) struct Writer<'t> {
            txn: &'t WriteTransaction,
            $($field: Option<Table<'t, $key, $value>>,)*
        }

        impl<'t> Writer<'t> {
            /// The index tables of `txn`, none opened yet.
            pub(super) fn open(txn: &'t WriteTransaction) -> Self {
                Self { txn, $($field: None,)* }
            }

            $(
                fn $field(&mut self) -> Result<&mut Table<'t, $key, $value>, StoreError> {
                    opened(&mut self.$field, self.txn, $table)
                }
            )*
        }
    };
}

writer! {
    summaries => SUMMARIES: &'static str, &'static [u8];
    by_time => BY_TIME: (u64, u64, &'static str), ();
    by_state => BY_STATE: (&'static str, u64, u64, &'static str), ();
    by_pipeline => BY_PIPELINE: (&'static str, u64, u64, &'static str), ();
    by_pipeline_state => BY_PIPELINE_STATE: (&'static str, &'static str, u64, u64, &'static str), ();
    good => GOOD: (&'static str, &'static str, u64, &'static str), ();
    approval_rows => APPROVALS: ApprovalRow<'static>, &'static [u8];
    audit_rows => AUDIT_BY_RELEASE: (&'static str, u64), ();
    counts => COUNTS: (&'static str, &'static str, &'static str), u64;
}

/// `slot`'s table, opened in `txn` first if it is not yet.
fn opened<'s, 't, K: redb::Key + 'static, V: redb::Value + 'static>(
    slot: &'s mut Option<Table<'t, K, V>>,
    txn: &'t WriteTransaction,
    table: TableDefinition<'_, K, V>,
) -> Result<&'s mut Table<'t, K, V>, StoreError> {
    match slot {
        Some(open) => Ok(open),
        None => Ok(slot.insert(txn.open_table(table).map_err(storage)?)),
    }
}

impl Writer<'_> {
    /// Notes audit entry `seq` as `release`'s (nothing for an entry of no release).
    pub(super) fn audit(&mut self, release: &str, seq: u64) -> Result<(), StoreError> {
        if !release.is_empty() {
            self.audit_rows()?
                .insert((release, seq), ())
                .map_err(storage)?;
        }
        Ok(())
    }

    /// Indexes a release as `new` says, in place of what its stored summary said.
    pub(super) fn put(&mut self, new: &Indexed) -> Result<(), StoreError> {
        let name = new.summary.name.as_str();
        let old: Option<Summary> = match self.summaries()?.get(name).map_err(storage)? {
            Some(bytes) => Some(decode(&format!("summary of {name}"), bytes.value())?),
            None => None,
        };
        self.summaries()?
            .insert(name, new.bytes.as_slice())
            .map_err(storage)?;
        let s = &new.summary;
        let (o, pipeline) = (order(s), s.pipeline.as_str());
        let mut deltas = Deltas::default();
        if old.is_none() {
            self.by_time()?
                .insert((o.0, o.1, name), ())
                .map_err(storage)?;
            self.by_pipeline()?
                .insert((pipeline, o.0, o.1, name), ())
                .map_err(storage)?;
        }
        let old_state = old.as_ref().map(|old| old.state);
        if old_state != Some(s.state) {
            if let Some(state) = old_state {
                let label = release_label(state);
                self.by_state()?
                    .remove((label, o.0, o.1, name))
                    .map_err(storage)?;
                self.by_pipeline_state()?
                    .remove((pipeline, label, o.0, o.1, name))
                    .map_err(storage)?;
            }
            let label = release_label(s.state);
            self.by_state()?
                .insert((label, o.0, o.1, name), ())
                .map_err(storage)?;
            self.by_pipeline_state()?
                .insert((pipeline, label, o.0, o.1, name), ())
                .map_err(storage)?;
        }
        if let Some(old) = &old {
            deltas.count(old, -1);
        }
        deltas.count(s, 1);
        self.successes(old.as_ref(), s)?;
        self.approvals(old.as_ref(), new)?;
        for ((kind, pipeline, state), delta) in deltas.0 {
            if delta != 0 {
                self.bump(kind, &pipeline, state, delta)?;
            }
        }
        Ok(())
    }

    /// Removes every row and count of release `name` (its audit entries stay in the trail, and
    /// indexed): for a record taken out of the store, a quarantined one say. False when it had
    /// no summary (nothing indexed).
    pub(super) fn remove(&mut self, name: &str) -> Result<bool, StoreError> {
        let old: Summary = match self.summaries()?.remove(name).map_err(storage)? {
            Some(bytes) => decode(&format!("summary of {name}"), bytes.value())?,
            None => return Ok(false),
        };
        let (o, pipeline) = (order(&old), old.pipeline.as_str());
        let label = release_label(old.state);
        self.by_time()?.remove((o.0, o.1, name)).map_err(storage)?;
        self.by_pipeline()?
            .remove((pipeline, o.0, o.1, name))
            .map_err(storage)?;
        self.by_state()?
            .remove((label, o.0, o.1, name))
            .map_err(storage)?;
        self.by_pipeline_state()?
            .remove((pipeline, label, o.0, o.1, name))
            .map_err(storage)?;
        for (stage, at) in successes(&old) {
            self.good()?
                .remove((pipeline, stage.as_str(), !at, name))
                .map_err(storage)?;
        }
        for key in &old.approvals {
            let row = (approval_label(key.state), o.0, o.1, name);
            self.approval_rows()?
                .remove((row.0, row.1, row.2, row.3, key.stage, key.attempt, key.pos))
                .map_err(storage)?;
        }
        let mut deltas = Deltas::default();
        deltas.count(&old, -1);
        for ((kind, pipeline, state), delta) in deltas.0 {
            if delta != 0 {
                self.bump(kind, &pipeline, state, delta)?;
            }
        }
        Ok(true)
    }

    /// The stage-success rows: those of `old` that `new` no longer has go, the new ones come.
    fn successes(&mut self, old: Option<&Summary>, new: &Summary) -> Result<(), StoreError> {
        let (before, after) = (old.map(successes).unwrap_or_default(), successes(new));
        if before == after {
            return Ok(());
        }
        let (pipeline, name) = (new.pipeline.as_str(), new.name.as_str());
        for (stage, at) in before.iter().filter(|row| !after.contains(row)) {
            self.good()?
                .remove((pipeline, stage.as_str(), !at, name))
                .map_err(storage)?;
        }
        for (stage, at) in after.iter().filter(|row| !before.contains(row)) {
            self.good()?
                .insert((pipeline, stage.as_str(), !at, name), ())
                .map_err(storage)?;
        }
        Ok(())
    }

    /// The approval rows: rewritten unless every approval is as it was.
    fn approvals(&mut self, old: Option<&Summary>, new: &Indexed) -> Result<(), StoreError> {
        let s = &new.summary;
        if let Some(old) = old
            && old.approvals == s.approvals
            && old.approvals_hash == s.approvals_hash
            && order(old) == order(s)
        {
            return Ok(());
        }
        let name = s.name.as_str();
        if let Some(old) = old {
            let o = order(old);
            for key in &old.approvals {
                let row = (approval_label(key.state), o.0, o.1, name);
                self.approval_rows()?
                    .remove((row.0, row.1, row.2, row.3, key.stage, key.attempt, key.pos))
                    .map_err(storage)?;
            }
        }
        let o = order(s);
        for (key, bytes) in &new.approvals {
            let label = approval_label(key.state);
            self.approval_rows()?
                .insert(
                    (label, o.0, o.1, name, key.stage, key.attempt, key.pos),
                    bytes.as_slice(),
                )
                .map_err(storage)?;
        }
        Ok(())
    }

    fn bump(&mut self, kind: &str, pipeline: &str, state: &str, by: i64) -> Result<(), StoreError> {
        let key = (kind, pipeline, state);
        let now = self
            .counts()?
            .get(key)
            .map_err(storage)?
            .map_or(0, |v| v.value());
        match now.saturating_add_signed(by) {
            0 => self.counts()?.remove(key).map(drop),
            n => self.counts()?.insert(key, n).map(drop),
        }
        .map_err(storage)
    }
}

/// The (stage, finished at) of each stage whose latest attempt succeeded (or partially), for
/// a release not abandoned: where it is a rollback's target.
fn successes(summary: &Summary) -> Vec<(String, u64)> {
    if summary.state == ReleaseState::Abandoned {
        return Vec::new();
    }
    summary
        .stages
        .iter()
        .filter(|s| {
            matches!(
                s.state,
                StageState::Succeeded | StageState::PartiallySucceeded
            )
        })
        .filter_map(|s| Some((s.name.clone(), s.finished_at?)))
        .collect()
}

/// Changes to the counts one rewrite makes, netted: most transitions move one stage.
#[derive(Default)]
struct Deltas(BTreeMap<(&'static str, String, &'static str), i64>);

impl Deltas {
    fn count(&mut self, summary: &Summary, by: i64) {
        let state = release_label(summary.state);
        *self.0.entry((RELEASE, String::new(), state)).or_default() += by;
        *self
            .0
            .entry((RELEASE, summary.pipeline.clone(), state))
            .or_default() += by;
        for stage in &summary.stages {
            let key = (DEPLOYMENT, String::new(), stage_label(stage.state));
            *self.0.entry(key).or_default() += by;
        }
        for approval in &summary.approvals {
            let key = (APPROVAL, String::new(), approval_label(approval.state));
            *self.0.entry(key).or_default() += by;
        }
    }
}
