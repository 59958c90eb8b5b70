//! The newest entries of the audit trail, shared by every follower: decoded and encoded as
//! JSON once, so the thousand streams one commit wakes read them from memory, not a thousand
//! times from the store. Bounded: at most [`TAIL`] entries, whatever the number of streams.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{Store, StoreError};

/// Entries the shared tail keeps: the newest, which every live follower reads.
const TAIL: usize = 1024;

/// An audit entry as a follower sends it: its JSON made once, shared by every stream.
#[derive(Debug)]
pub struct Followed {
    /// The entry's sequence number (its event id).
    pub seq: u64,
    /// Its release (empty for a refusal), to filter on.
    pub release: String,
    /// The entry as JSON (one line).
    pub json: String,
}

/// The newest entries of the trail, decoded and encoded once: a thousand followers woken by
/// one commit read it from here, not a thousand times from the store. A contiguous range of
/// at most [`TAIL`] entries, `start..start + entries.len()`.
#[derive(Default)]
pub(super) struct Tail(Mutex<TailRange>);

#[derive(Default)]
struct TailRange {
    start: u64,
    entries: VecDeque<Arc<Followed>>,
}

impl TailRange {
    fn end(&self) -> u64 {
        self.start + self.entries.len() as u64
    }
}

/// A follower's page: the entries to send and where it carries on.
#[derive(Debug, Default)]
pub struct FollowPage {
    /// The entries, oldest first.
    pub entries: Vec<Arc<Followed>>,
    /// The sequence number after the last entry looked at.
    pub next: u64,
}

impl Store {
    /// A follower's next page: `release`'s entries (any release's for `None`) among the
    /// `limit` from `seq` on, from the shared tail when they are in it (or are the next to
    /// join it), else from the store.
    pub fn audit_follow(
        &self,
        seq: u64,
        release: Option<&str>,
        limit: usize,
    ) -> Result<FollowPage, StoreError> {
        let keep = |page: Vec<Arc<Followed>>, next: u64| FollowPage {
            entries: page
                .into_iter()
                .filter(|e| release.is_none_or(|r| e.release == r))
                .collect(),
            next,
        };
        let mut tail = self.tail.0.lock().unwrap_or_else(|e| e.into_inner());
        let (start, end) = (tail.start, tail.end());
        if (start..end).contains(&seq) {
            let from = (seq - start) as usize;
            let page: Vec<_> = tail.entries.range(from..).take(limit).cloned().collect();
            let next = seq + page.len() as u64;
            return Ok(keep(page, next));
        }
        if seq == end || tail.entries.is_empty() {
            // Nothing committed from `seq` on: no read (a thousand followers that just sent
            // the newest entry ask this at once, each under the lock).
            if *self.audit_len.borrow() <= seq {
                return Ok(keep(Vec::new(), seq));
            }
            // The newest entries: read once, kept for the followers after this one.
            let page = self.followed_from(seq, limit)?;
            if let Some(last) = page.last() {
                // Sequence numbers have no gaps; were there one, the tail starts again after it.
                let contiguous = (seq..).zip(&page).all(|(at, e)| e.seq == at);
                if !contiguous {
                    tail.entries.clear();
                } else {
                    if tail.entries.is_empty() {
                        tail.start = seq;
                    }
                    tail.entries.extend(page.iter().cloned());
                    while tail.entries.len() > TAIL {
                        tail.entries.pop_front();
                        tail.start += 1;
                    }
                }
                let next = last.seq + 1;
                return Ok(keep(page, next));
            }
            return Ok(keep(page, seq));
        }
        // Behind the tail (or past it): from the store, not kept.
        drop(tail);
        let page = self.followed_from(seq, limit)?;
        let next = page.last().map_or(seq, |e| e.seq + 1);
        Ok(keep(page, next))
    }

    fn followed_from(&self, seq: u64, limit: usize) -> Result<Vec<Arc<Followed>>, StoreError> {
        let mut out = Vec::new();
        for entry in self.audit_from(seq, limit)? {
            let json =
                serde_json::to_string(&entry).map_err(|e| StoreError::Storage(e.to_string()))?;
            out.push(Arc::new(Followed {
                seq: entry.seq,
                release: entry.release,
                json,
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuditEntry;
    use crate::store::audit::tests::trail;

    #[test]
    fn followers_read_the_newest_entries_from_the_shared_tail_and_older_ones_from_the_store() {
        let (_dir, store) = trail(3000);
        let ids = |page: &FollowPage| page.entries.iter().map(|e| e.seq).collect::<Vec<_>>();
        // The first follower at the end fills the tail; the next reads it from there.
        let first = store.audit_follow(2990, None, 256).unwrap();
        assert_eq!(ids(&first), (2990..3000).collect::<Vec<_>>());
        assert_eq!(first.next, 3000);
        let again = store.audit_follow(2995, Some("r"), 256).unwrap();
        assert_eq!((ids(&again), again.next), (vec![2997], 3000));
        assert!(Arc::ptr_eq(&first.entries[7], &again.entries[0]));
        // The JSON sent is the entry's.
        let entry: AuditEntry = serde_json::from_str(&again.entries[0].json).unwrap();
        assert_eq!((entry.seq, entry.release.as_str()), (2997, "r"));
        // A follower far behind reads the store; the tail stays where it is.
        let behind = store.audit_follow(0, None, 5).unwrap();
        assert_eq!((ids(&behind), behind.next), (vec![0, 1, 2, 3, 4], 5));
        // Nothing new: nothing sent, the cursor stays.
        let idle = store.audit_follow(3000, None, 256).unwrap();
        assert_eq!((idle.entries.len(), idle.next), (0, 3000));
        // The tail never holds more than TAIL entries.
        let (_dir2, long) = trail(3000);
        let mut at = 0;
        while at < 3000 {
            at = long.audit_follow(at, None, 256).unwrap().next;
        }
        assert_eq!(long.tail.0.lock().unwrap().entries.len(), 1024);
    }
}
