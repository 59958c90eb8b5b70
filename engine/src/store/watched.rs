//! The database file's backend as the store opens it: the real one (or the fault tests'),
//! reporting every I/O error to the store's latch (`handle.rs`) before redb sees it.

use std::io;
use std::sync::Arc;

use redb::StorageBackend;

use super::fault;
use super::handle::Latch;

/// The database file's backend, reporting every I/O error to the latch (and, only when the
/// `SLUICE_FAULT_STORAGE` test hook is set, failing calls on purpose: `fault.rs`).
#[derive(Debug)]
pub(super) struct Watched {
    inner: Box<dyn StorageBackend>,
    latch: Arc<Latch>,
}

impl Watched {
    pub(super) fn new(inner: Box<dyn StorageBackend>, latch: Arc<Latch>) -> Self {
        Self { inner, latch }
    }

    fn watch<T>(&self, call: &str, result: Result<T, io::Error>) -> Result<T, io::Error> {
        if let Err(e) = &result {
            self.latch.io_error(call, e);
        }
        result
    }

    fn injected(&self, call: fault::Call, grows: bool) -> Result<(), io::Error> {
        let reopening = self.latch.reopening();
        match fault::storage(call, grows, reopening) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl StorageBackend for Watched {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let result = self.inner.read(offset, out);
        self.watch("read", result)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let grows = fault::hooked() && len > self.inner.len()?;
        let result = self
            .injected(fault::Call::SetLen, grows)
            .and_then(|()| self.inner.set_len(len));
        self.watch("growing", result)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let result = self
            .injected(fault::Call::Sync, false)
            .and_then(|()| self.inner.sync_data());
        self.watch("sync", result)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let grows = fault::hooked() && offset + data.len() as u64 > self.inner.len()?;
        let result = self
            .injected(fault::Call::Write, grows)
            .and_then(|()| self.inner.write(offset, data));
        self.watch("write", result)
    }

    super::delegate_locks!();
}
