//! Receipts: what a change stores so that its retry changes nothing. Two kinds:
//!
//! - **Expiring** (the API's idempotent requests, keyed `user\nkey`): the answer, with the time
//!   it was stored, written in the commit of the change it answers (and only then: a refused
//!   request changed nothing and stores nothing). A lookup treats a receipt older than the
//!   caller's cut-off as absent; [`Store::sweep_receipts`] deletes expired ones in bounded
//!   batches, found through [`EXPIRY`] (keyed by stored-at, then key), never by a scan.
//! - **Lasting** (release triggers' exactly-once marks, keys starting with a newline): kept for
//!   ever, like the releases they name.
//!
//! Stores written before receipts expired hold the API's receipts, untimed, among the lasting
//! ones ([`RECEIPTS`]). They are treated as stored when this process opened the store: a retry
//! across an upgrade still replays for one time-to-live, after which the sweep deletes them in
//! the same bounded batches (they are not in the receipt count).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use tokio::sync::watch;

use super::{Store, StoreError, now_ms, storage};
use crate::core::Release;

/// Lasting receipts (triggers' marks, by a key starting with `\n`), and the API's receipts of
/// stores written before receipts expired (by `user\nkey`: a user's name starts with a letter
/// or digit, so every one sorts at or after [`LEGACY_FROM`]).
pub(super) const RECEIPTS: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("idempotency_receipts");
/// Expiring receipts by `user\nkey`: when stored (Unix milliseconds) and the answer.
pub(super) const TIMED: TableDefinition<'_, &str, (u64, &[u8])> =
    TableDefinition::new("expiring_receipts");
/// The expiring receipts by (stored-at, key), oldest first: what the sweep reads.
pub(super) const EXPIRY: TableDefinition<'_, (u64, &str), ()> =
    TableDefinition::new("receipt_expiry");
/// The first key of an untimed API receipt (after every trigger mark's `\n`).
const LEGACY_FROM: &str = "\u{b}";

/// The response to a request, made from the release after the change and stored in the same
/// commit: a retry after a crash finds it exactly when the change is there.
pub struct Receipt {
    /// Where the response is stored: a retry looks it up by this key before changing anything.
    key: String,
    /// Whether it is kept for ever (a trigger's mark) or expires (an API request's answer).
    lasting: bool,
    /// Makes the response from the release as committed: what a change made (its number, its
    /// state after the transition) is known only once it is applied, inside the commit.
    encode: Box<Encode>,
}

/// How a [`Receipt`] makes its bytes from the committed release.
type Encode = dyn FnOnce(&Release) -> Vec<u8> + Send;

/// A receipt's key, kind and bytes, ready to be written.
pub(super) struct Sealed {
    key: String,
    lasting: bool,
    bytes: Vec<u8>,
}

impl Receipt {
    /// An API request's receipt under `key` (`user\nkey`), expiring after the service's
    /// `receipt-ttl`; its bytes made by `encode` from the committed release.
    pub fn expiring(
        key: impl Into<String>,
        encode: impl FnOnce(&Release) -> Vec<u8> + Send + 'static,
    ) -> Self {
        Self {
            key: key.into(),
            lasting: false,
            encode: Box::new(encode),
        }
    }

    /// A trigger's mark under `key` (starting with `\n`), kept for ever.
    pub fn lasting(
        key: impl Into<String>,
        encode: impl FnOnce(&Release) -> Vec<u8> + Send + 'static,
    ) -> Self {
        Self {
            key: key.into(),
            lasting: true,
            encode: Box::new(encode),
        }
    }

    /// The key and the bytes to store with `release`.
    pub(super) fn seal(self, release: &Release) -> Sealed {
        Sealed {
            bytes: (self.encode)(release),
            key: self.key,
            lasting: self.lasting,
        }
    }
}

/// The expiring receipts stored, as of the last commit that wrote or swept one (a gauge read
/// per scrape costs nothing, and a test can wait on it), and when this process opened the
/// store (the time of untimed ones).
pub(super) struct Counts {
    stored: watch::Sender<u64>,
    /// The commit order of the last count published: a count read inside a write transaction
    /// is published after its commit, never over a later commit's.
    published: Mutex<u64>,
    next: AtomicU64,
    opened_at: u64,
}

/// A count read inside a write transaction, to publish once it commits.
pub(super) struct Count {
    order: u64,
    stored: u64,
}

impl Counts {
    /// Counts the expiring receipts of an open store.
    pub(super) fn open(txn: &redb::WriteTransaction) -> Result<Self, StoreError> {
        txn.open_table(RECEIPTS).map_err(storage)?;
        txn.open_table(EXPIRY).map_err(storage)?;
        let stored = txn
            .open_table(TIMED)
            .map_err(storage)?
            .len()
            .map_err(storage)?;
        Ok(Self {
            stored: watch::Sender::new(stored),
            published: Mutex::new(0),
            next: AtomicU64::new(1),
            opened_at: now_ms(),
        })
    }

    /// The count `stored`, read in an open write transaction (one at a time: their order is
    /// the commits' order).
    fn read(&self, stored: u64) -> Count {
        Count {
            order: self.next.fetch_add(1, Ordering::SeqCst),
            stored,
        }
    }

    /// After the commit of the transaction `count` was read in.
    pub(super) fn publish(&self, count: Count) {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if count.order > *published {
            *published = count.order;
            self.stored.send_if_modified(|n| {
                let changed = *n != count.stored;
                *n = count.stored;
                changed
            });
        }
    }
}

/// Writes receipts into one write transaction; counts the new expiring ones.
pub(super) struct Writer<'t> {
    lasting: redb::Table<'t, &'static str, &'static [u8]>,
    timed: redb::Table<'t, &'static str, (u64, &'static [u8])>,
    expiry: redb::Table<'t, (u64, &'static str), ()>,
}

impl<'t> Writer<'t> {
    pub(super) fn open(txn: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            lasting: txn.open_table(RECEIPTS).map_err(storage)?,
            timed: txn.open_table(TIMED).map_err(storage)?,
            expiry: txn.open_table(EXPIRY).map_err(storage)?,
        })
    }

    /// The expiring receipts stored once this transaction commits: publish it then.
    pub(super) fn count(&self, counts: &Counts) -> Result<Count, StoreError> {
        Ok(counts.read(self.timed.len().map_err(storage)?))
    }

    /// Stores `receipt`, an expiring one as stored now.
    pub(super) fn put(&mut self, receipt: &Sealed) -> Result<(), StoreError> {
        let key = receipt.key.as_str();
        if receipt.lasting {
            self.lasting
                .insert(key, receipt.bytes.as_slice())
                .map_err(storage)?;
            return Ok(());
        }
        let at = now_ms();
        let old = self
            .timed
            .insert(key, (at, receipt.bytes.as_slice()))
            .map_err(storage)?
            .map(|old| old.value().0);
        // An expired receipt not swept yet, replaced: its place in the expiry order goes.
        if let Some(old_at) = old {
            self.expiry.remove((old_at, key)).map_err(storage)?;
        }
        self.expiry.insert((at, key), ()).map_err(storage)?;
        Ok(())
    }
}

impl Store {
    /// The lasting receipt (a trigger's mark) under `key`, if there is one.
    pub fn receipt(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(RECEIPTS).map_err(storage)?;
        Ok(table.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
    }

    /// Stores a lasting receipt that goes with no change (a trigger's mark of a version seen).
    pub fn put_receipt(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        txn.open_table(RECEIPTS)
            .map_err(storage)?
            .insert(key, bytes)
            .map_err(storage)?;
        txn.commit().map_err(storage)
    }

    /// The expiring receipt under `key` if it was stored at or after `not_before` (Unix
    /// milliseconds); an older one is absent, swept or not.
    pub fn fresh_receipt(&self, key: &str, not_before: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let timed = txn.open_table(TIMED).map_err(storage)?;
        if let Some(value) = timed.get(key).map_err(storage)? {
            let (at, bytes) = value.value();
            return Ok((at >= not_before).then(|| bytes.to_vec()));
        }
        if key.starts_with('\n') || self.receipts.opened_at < not_before {
            return Ok(None);
        }
        let legacy = txn.open_table(RECEIPTS).map_err(storage)?;
        Ok(legacy
            .get(key)
            .map_err(storage)?
            .map(|v| v.value().to_vec()))
    }

    /// How many expiring receipts are stored (kept, not counted: cheap).
    pub fn receipt_count(&self) -> u64 {
        *self.receipts.stored.borrow()
    }

    /// The number of expiring receipts stored, changing after every commit or sweep that
    /// changes it: wait on it to see a sweep's effect.
    pub fn receipts_stored(&self) -> watch::Receiver<u64> {
        self.receipts.stored.subscribe()
    }

    /// Deletes at most `max` expiring receipts stored before `stored_before` (Unix
    /// milliseconds), oldest first, in one write transaction; returns how many went. Untimed
    /// receipts of an older store go too once they are past the cut-off. Call again while it
    /// returns `max`: each call holds the store's one writer for one small transaction only
    /// (redb has one writer at a time; the committer's batches and this wait for each other).
    pub fn sweep_receipts(&self, stored_before: u64, max: usize) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let (count, deleted) = {
            let mut expiry = txn.open_table(EXPIRY).map_err(storage)?;
            let mut timed = txn.open_table(TIMED).map_err(storage)?;
            let mut due = Vec::new();
            for entry in expiry
                .range(..(stored_before, ""))
                .map_err(storage)?
                .take(max)
            {
                let (key, _) = entry.map_err(storage)?;
                let (at, key) = key.value();
                due.push((at, key.to_owned()));
            }
            for (at, key) in &due {
                expiry.remove((*at, key.as_str())).map_err(storage)?;
                let current = timed
                    .get(key.as_str())
                    .map_err(storage)?
                    .map(|v| v.value().0);
                if current == Some(*at) {
                    timed.remove(key.as_str()).map_err(storage)?;
                }
            }
            let count = self.receipts.read(timed.len().map_err(storage)?);
            let mut legacy = Vec::new();
            if self.receipts.opened_at < stored_before {
                let table = txn.open_table(RECEIPTS).map_err(storage)?;
                for entry in table
                    .range(LEGACY_FROM..)
                    .map_err(storage)?
                    .take(max - due.len())
                {
                    legacy.push(entry.map_err(storage)?.0.value().to_owned());
                }
            }
            let mut table = txn.open_table(RECEIPTS).map_err(storage)?;
            for key in &legacy {
                table.remove(key.as_str()).map_err(storage)?;
            }
            (count, due.len() + legacy.len())
        };
        txn.commit().map_err(storage)?;
        self.receipts.publish(count);
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores an expiring (or lasting) receipt in a commit of its own, as a change's commit does.
    fn put(store: &Store, key: &str, lasting: bool) {
        let txn = store.db.begin_write().unwrap();
        let count = {
            let mut writer = Writer::open(&txn).unwrap();
            let sealed = Sealed {
                key: key.to_owned(),
                lasting,
                bytes: key.as_bytes().to_vec(),
            };
            writer.put(&sealed).unwrap();
            writer.count(&store.receipts).unwrap()
        };
        txn.commit().unwrap();
        store.receipts.publish(count);
    }

    fn timed_rows(store: &Store) -> (u64, u64) {
        let txn = store.db.begin_read().unwrap();
        let timed = txn.open_table(TIMED).unwrap().len().unwrap();
        (timed, txn.open_table(EXPIRY).unwrap().len().unwrap())
    }

    #[test]
    fn an_expired_receipt_is_not_found_and_the_sweep_deletes_it_but_no_lasting_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = now_ms();
        put(&store, "rita\nk-1", false);
        put(&store, "\ntrigger\nshop\nschedule\n1", true);
        let after = now_ms();
        assert_eq!(store.receipt_count(), 1, "a trigger's mark is not counted");
        assert_eq!(
            store.fresh_receipt("rita\nk-1", before).unwrap(),
            Some(b"rita\nk-1".to_vec())
        );
        // Older than the cut-off, not swept yet: absent all the same.
        assert_eq!(store.fresh_receipt("rita\nk-1", after + 1).unwrap(), None);
        assert_eq!(
            store.sweep_receipts(before, 256).unwrap(),
            0,
            "not expired yet"
        );
        assert_eq!(store.receipt_count(), 1);

        // Stored again once expired: one receipt, one place in the expiry order.
        put(&store, "rita\nk-1", false);
        assert_eq!(store.receipt_count(), 1);
        assert_eq!(timed_rows(&store), (1, 1));

        assert_eq!(store.sweep_receipts(now_ms() + 1, 256).unwrap(), 1);
        assert_eq!(store.receipt_count(), 0);
        assert_eq!(timed_rows(&store), (0, 0));
        assert_eq!(store.fresh_receipt("rita\nk-1", 0).unwrap(), None);
        let mark = store.receipt("\ntrigger\nshop\nschedule\n1").unwrap();
        assert!(mark.is_some(), "a trigger's mark lasts");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.receipt_count(),
            0,
            "the count is the table's after a reopen"
        );
    }

    #[test]
    fn the_sweep_deletes_in_batches_of_at_most_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..600 {
            put(&store, &format!("vic\nk-{i}"), false);
        }
        assert_eq!(store.receipt_count(), 600);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.receipt_count(), 600, "counted from the table on open");
        let cut_off = now_ms() + 1;
        let batches: Vec<usize> = (0..4)
            .map(|_| store.sweep_receipts(cut_off, 256).unwrap())
            .collect();
        assert_eq!(batches, [256, 256, 88, 0]);
        assert_eq!(store.receipt_count(), 0);
        assert_eq!(timed_rows(&store), (0, 0));
    }

    #[test]
    fn an_older_stores_untimed_receipts_replay_for_one_ttl_from_the_open_then_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // As Sluice stored them before receipts expired: untimed, among the lasting ones.
        store.put_receipt("vic\nrefused-1", b"{}").unwrap();
        store
            .put_receipt("\ntrigger\nshop\nschedule\n1", b"")
            .unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let opened = store.receipts.opened_at;
        assert_eq!(store.receipt_count(), 0, "untimed receipts are not counted");
        let found = store.fresh_receipt("vic\nrefused-1", opened).unwrap();
        assert_eq!(
            found,
            Some(b"{}".to_vec()),
            "stored, as far as anyone knows, at the open"
        );
        assert_eq!(store.sweep_receipts(opened, 256).unwrap(), 0);
        let cut_off = now_ms() + 1;
        assert_eq!(
            store.fresh_receipt("vic\nrefused-1", cut_off).unwrap(),
            None
        );
        assert_eq!(store.sweep_receipts(cut_off, 256).unwrap(), 1);
        assert_eq!(store.receipt("vic\nrefused-1").unwrap(), None, "deleted");
        let mark = store.receipt("\ntrigger\nshop\nschedule\n1").unwrap();
        assert!(
            mark.is_some(),
            "a trigger's mark is not an untimed API receipt"
        );
    }
}
