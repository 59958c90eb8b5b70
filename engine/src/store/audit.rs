//! Reading the audit trail, always bounded: a page forward from a sequence number, or the
//! latest entries backward from the end (redb's range, reversed). One release's entries are
//! found through the (release, seq) index (`index.rs`), so reading them costs what they are,
//! not the trail. No read holds more than the entries it returns plus one page of the table,
//! so a long trail costs a reader time, never memory; each page of a scan is its own read
//! transaction, so a long scan never pins an old version of the file.

use tokio::sync::watch;

use super::index::AUDIT_BY_RELEASE;
use super::{AUDIT, AuditEntry, Store, StoreError, decode, storage};

/// Entries of the table looked at per read transaction.
pub const SCAN_PAGE: usize = 256;

/// What a bounded read of the trail found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditScan {
    /// The entries asked for, oldest first.
    pub entries: Vec<AuditEntry>,
    /// Where a reader carries on: the sequence number after the last entry looked at (a
    /// forward read), or after the last entry in the trail when the read began (a backward
    /// one).
    pub next: u64,
}

impl Store {
    /// The whole audit trail, oldest first (tests and tools; the service reads in pages).
    pub fn audit(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let page = self.audit_from(from, SCAN_PAGE)?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            from = last.seq + 1;
            out.extend(page);
        }
    }

    /// At most `limit` audit entries from `seq` on, oldest first, every release's.
    pub fn audit_from(&self, seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(AUDIT).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table.range(seq..).map_err(storage)?.take(limit) {
            let (key, value) = entry.map_err(storage)?;
            out.push(entry_of(key.value(), value.value())?);
        }
        Ok(out)
    }

    /// The first `limit` entries from `seq` on that are `release`'s (any release's when
    /// `None`), looking at no more than `budget` entries of the trail; `next` is where a
    /// reader carries on (after the last entry looked at).
    pub fn audit_forward(
        &self,
        seq: u64,
        release: Option<&str>,
        limit: usize,
        budget: usize,
    ) -> Result<AuditScan, StoreError> {
        if let Some(release) = release {
            return self.release_forward(seq, release, limit.min(budget));
        }
        let mut scan = AuditScan {
            entries: Vec::new(),
            next: seq,
        };
        let mut looked = 0;
        while scan.entries.len() < limit && looked < budget {
            let page = SCAN_PAGE.min(budget - looked);
            let txn = self.db.begin_read().map_err(storage)?;
            let table = txn.open_table(AUDIT).map_err(storage)?;
            let mut seen = 0;
            for entry in table.range(scan.next..).map_err(storage)?.take(page) {
                let (key, value) = entry.map_err(storage)?;
                seen += 1;
                scan.next = key.value() + 1;
                if let Some(entry) = matching(key.value(), value.value(), release)? {
                    scan.entries.push(entry);
                    if scan.entries.len() == limit {
                        break;
                    }
                }
            }
            looked += seen;
            if seen < page && scan.entries.len() < limit {
                // The end of the trail.
                break;
            }
        }
        Ok(scan)
    }

    /// The latest `limit` entries that are `release`'s (any release's when `None`), oldest
    /// first; `next` is the sequence number after the last entry of the trail.
    pub fn audit_latest(
        &self,
        release: Option<&str>,
        limit: usize,
    ) -> Result<AuditScan, StoreError> {
        if limit == 0 {
            // Nothing read: the end of the trail as the last commit announced it.
            let next = *self.audit_len.borrow();
            return Ok(AuditScan {
                entries: Vec::new(),
                next,
            });
        }
        let mut newest_first = Vec::new();
        let next = self.walk_back(release, |entry| {
            newest_first.push(entry);
            newest_first.len() < limit
        })?;
        newest_first.reverse();
        Ok(AuditScan {
            entries: newest_first,
            next,
        })
    }

    /// Where a follower of the latest `limit` entries that are `release`'s starts: the
    /// sequence number of the oldest of them, keeping none of them; with none (none asked
    /// for, or none there), the end of the trail.
    pub fn audit_latest_start(
        &self,
        release: Option<&str>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        if limit == 0 {
            return Ok(*self.audit_len.borrow());
        }
        let (mut found, mut oldest) = (0, None);
        let end = self.walk_back(release, |entry| {
            found += 1;
            oldest = Some(entry.seq);
            found < limit
        })?;
        Ok(oldest.unwrap_or(end))
    }

    /// Walks the trail newest first, a read transaction per page of [`SCAN_PAGE`], handing
    /// each entry that is `release`'s (any release's for `None`) to `more` until it answers
    /// `false`; returns the sequence number after the newest entry (0 for an empty trail).
    fn walk_back(
        &self,
        release: Option<&str>,
        mut more: impl FnMut(AuditEntry) -> bool,
    ) -> Result<u64, StoreError> {
        if let Some(release) = release {
            return self.release_back(release, more);
        }
        let (mut end, mut newest) = (None::<u64>, None);
        loop {
            let txn = self.db.begin_read().map_err(storage)?;
            let table = txn.open_table(AUDIT).map_err(storage)?;
            let range = match end {
                None => table.range::<u64>(..),
                Some(0) => break,
                Some(end) => table.range(..end),
            }
            .map_err(storage)?;
            let mut seen = 0;
            for entry in range.rev().take(SCAN_PAGE) {
                let (key, value) = entry.map_err(storage)?;
                seen += 1;
                end = Some(key.value());
                newest.get_or_insert(key.value() + 1);
                if let Some(entry) = matching(key.value(), value.value(), release)?
                    && !more(entry)
                {
                    return Ok(newest.unwrap_or(0));
                }
            }
            if seen < SCAN_PAGE {
                break;
            }
        }
        Ok(newest.unwrap_or(0))
    }

    /// `release`'s first `limit` entries from `seq` on, through the index, in one read
    /// transaction; `next` is after the last one read, or the end of the trail when there are
    /// no more of them.
    fn release_forward(
        &self,
        seq: u64,
        release: &str,
        limit: usize,
    ) -> Result<AuditScan, StoreError> {
        if limit == 0 {
            // Nothing looked at: the cursor stays.
            return Ok(AuditScan {
                entries: Vec::new(),
                next: seq,
            });
        }
        self.deferred.fresh(&self.db)?;
        let txn = self.db.begin_read().map_err(storage)?;
        let index = txn.open_table(AUDIT_BY_RELEASE).map_err(storage)?;
        let trail = txn.open_table(AUDIT).map_err(storage)?;
        let mut entries = Vec::new();
        let range = index.range((release, seq)..=(release, u64::MAX));
        for row in range.map_err(storage)?.take(limit) {
            let (key, _) = row.map_err(storage)?;
            let at = key.value().1;
            if let Some(bytes) = trail.get(at).map_err(storage)? {
                entries.push(entry_of(at, bytes.value())?);
            }
        }
        let next = match entries.last() {
            Some(last) if entries.len() == limit => last.seq + 1,
            _ => end_of(&trail)?.max(seq),
        };
        Ok(AuditScan { entries, next })
    }

    /// [`Store::walk_back`] for one release, through the index, in one read transaction.
    fn release_back(
        &self,
        release: &str,
        mut more: impl FnMut(AuditEntry) -> bool,
    ) -> Result<u64, StoreError> {
        self.deferred.fresh(&self.db)?;
        let txn = self.db.begin_read().map_err(storage)?;
        let index = txn.open_table(AUDIT_BY_RELEASE).map_err(storage)?;
        let trail = txn.open_table(AUDIT).map_err(storage)?;
        let end = end_of(&trail)?;
        for row in index
            .range((release, 0)..=(release, u64::MAX))
            .map_err(storage)?
            .rev()
        {
            let (key, _) = row.map_err(storage)?;
            let at = key.value().1;
            let Some(bytes) = trail.get(at).map_err(storage)? else {
                continue;
            };
            if !more(entry_of(at, bytes.value())?) {
                break;
            }
        }
        Ok(end)
    }

    /// Appends `count` entries of no release (as refusals are) by `actor`, in transactions of
    /// 10,000: a large trail quickly, for benches that measure readers of one.
    #[doc(hidden)]
    pub fn append_bulk(&self, actor: &str, what: &str, count: u64) -> Result<(), StoreError> {
        let mut left = count;
        while left > 0 {
            let n = left.min(10_000);
            let txn = self.db.begin_write().map_err(storage)?;
            let len = {
                let mut table = txn.open_table(AUDIT).map_err(storage)?;
                let first = redb::ReadableTable::last(&table)
                    .map_err(storage)?
                    .map_or(0, |(k, _)| k.value() + 1);
                for seq in first..first + n {
                    let entry = AuditEntry {
                        seq,
                        release: String::new(),
                        revision: 0,
                        at: super::now_ms(),
                        actor: actor.to_owned(),
                        what: what.to_owned(),
                    };
                    let bytes = serde_json::to_vec(&entry)
                        .map_err(|e| StoreError::Storage(e.to_string()))?;
                    table.insert(seq, bytes.as_slice()).map_err(storage)?;
                }
                first + n
            };
            txn.commit().map_err(storage)?;
            super::refusals::forward(&self.audit_len, len);
            left -= n;
        }
        Ok(())
    }

    /// The audit trail's length, changing after every commit that extends it: wait on it to
    /// follow the trail.
    pub fn audit_len(&self) -> watch::Receiver<u64> {
        self.audit_len.subscribe()
    }
}

/// The sequence number after the trail's last entry (0 when empty).
/// The trail's length: the sequence number after its last entry (0 when empty), in a read or
/// a write transaction.
pub(super) fn end_of(
    trail: &impl redb::ReadableTable<u64, &'static [u8]>,
) -> Result<u64, StoreError> {
    Ok(trail
        .last()
        .map_err(storage)?
        .map_or(0, |(k, _)| k.value() + 1))
}

/// The entry stored under `seq`.
fn entry_of(seq: u64, bytes: &[u8]) -> Result<AuditEntry, StoreError> {
    let mut entry: AuditEntry = decode(&seq.to_string(), bytes)?;
    entry.seq = seq;
    Ok(entry)
}

/// The entry under `seq` if it is `release`'s (or `release` is `None`).
fn matching(
    seq: u64,
    bytes: &[u8],
    release: Option<&str>,
) -> Result<Option<AuditEntry>, StoreError> {
    let entry = entry_of(seq, bytes)?;
    Ok(release.is_none_or(|r| entry.release == r).then_some(entry))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A store with `n` refusals (entries of no release) and, every third entry, one of
    /// release `r`.
    pub(in crate::store) fn trail(n: u64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let txn = store.db.begin_write().unwrap();
        {
            let mut table = txn.open_table(AUDIT).unwrap();
            for seq in 0..n {
                let entry = AuditEntry {
                    seq,
                    release: if seq % 3 == 0 {
                        "r".into()
                    } else {
                        String::new()
                    },
                    revision: seq,
                    at: 0,
                    actor: "test".into(),
                    what: format!("entry {seq}"),
                };
                let bytes = serde_json::to_vec(&entry).unwrap();
                table.insert(seq, bytes.as_slice()).unwrap();
                if !entry.release.is_empty() {
                    let mut index = txn.open_table(AUDIT_BY_RELEASE).unwrap();
                    index.insert((entry.release.as_str(), seq), ()).unwrap();
                }
            }
        }
        txn.commit().unwrap();
        super::super::refusals::forward(&store.audit_len, n);
        (dir, store)
    }

    fn seqs(scan: &AuditScan) -> Vec<u64> {
        scan.entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_forward_read_filters_while_it_scans_and_says_where_to_carry_on() {
        let (_dir, store) = trail(1000);
        let all = store.audit_forward(10, None, 5, usize::MAX).unwrap();
        assert_eq!(seqs(&all), [10, 11, 12, 13, 14]);
        assert_eq!(all.next, 15);
        // Across pages: the 300 matches after 0 run past the first page of the table.
        let mine = store.audit_forward(1, Some("r"), 300, usize::MAX).unwrap();
        assert_eq!(mine.entries.len(), 300);
        assert!(mine.entries.iter().all(|e| e.release == "r"));
        assert_eq!(mine.entries[0].seq, 3);
        assert_eq!(mine.next, 901);
        // Fewer matches than asked: the read ends at the end of the trail.
        let tail = store.audit_forward(990, Some("r"), 50, usize::MAX).unwrap();
        assert_eq!(seqs(&tail), [990, 993, 996, 999]);
        assert_eq!(tail.next, 1000);
        // A budget bounds what one read looks at; the cursor moves past what it looked at.
        let bounded = store.audit_forward(1, None, 1000, 256).unwrap();
        assert_eq!(bounded.entries.len(), 256);
        assert_eq!(bounded.next, 257);
        // A release with no entries (found through the index, nothing scanned): none, and
        // the cursor at the end of the trail.
        let none = store.audit_forward(1, Some("none-such"), 10, 256).unwrap();
        assert_eq!((none.entries.len(), none.next), (0, 1000));
        // None asked: nothing looked at, the cursor stays.
        let zero = store.audit_forward(7, Some("r"), 0, 256).unwrap();
        assert_eq!((zero.entries.len(), zero.next), (0, 7));
        // From past the end: nothing, and the cursor stays.
        let past = store.audit_forward(5000, None, 10, usize::MAX).unwrap();
        assert_eq!((past.entries.len(), past.next), (0, 5000));
    }

    #[test]
    fn a_backward_read_keeps_only_the_latest_matches_oldest_first() {
        let (_dir, store) = trail(1000);
        let latest = store.audit_latest(None, 3).unwrap();
        assert_eq!(seqs(&latest), [997, 998, 999]);
        assert_eq!(latest.next, 1000);
        let mine = store.audit_latest(Some("r"), 200).unwrap();
        assert_eq!(mine.entries.len(), 200);
        assert_eq!(mine.entries.first().unwrap().seq, 999 - 3 * 199);
        assert_eq!(mine.entries.last().unwrap().seq, 999);
        assert_eq!(mine.next, 1000);
        // More asked than there are: every match, and the end of the trail.
        let few = store.audit_latest(Some("r"), 5000).unwrap();
        assert_eq!(few.entries.len(), 334);
        assert_eq!(few.next, 1000);
        // None asked: nothing read, the end of the trail as the follower's start.
        let none = store.audit_latest(Some("r"), 0).unwrap();
        assert_eq!((none.entries.len(), none.next), (0, 1000));
        // A follower's start: the oldest of the latest matches, read and dropped.
        assert_eq!(
            store.audit_latest_start(Some("r"), 200).unwrap(),
            999 - 3 * 199
        );
        assert_eq!(store.audit_latest_start(None, 1).unwrap(), 999);
        assert_eq!(store.audit_latest_start(Some("r"), 5000).unwrap(), 0);
        assert_eq!(
            store.audit_latest_start(Some("none-such"), 50).unwrap(),
            1000
        );
        assert_eq!(store.audit_latest_start(Some("r"), 0).unwrap(), 1000);
        // An empty trail.
        let (_empty_dir, empty) = trail(0);
        let nothing = empty.audit_latest(None, 50).unwrap();
        assert_eq!((nothing.entries.len(), nothing.next), (0, 0));
        assert_eq!(store.audit().unwrap().len(), 1000);
    }
}
