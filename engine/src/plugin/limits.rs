//! Enforcing [`Limits`](crate::types::Limits) inside wasmtime: the memory `ResourceLimiter`. Time is bounded by
//! epochs plus a timeout around the call (`call.rs`), log volume in `log.rs`, output size after
//! the call; the limit values themselves are plain types in [`crate::types::limits`].

use crate::types::limits::{LimitExceeded, LimitKind, format_bytes};

/// Bounds a store's linear memories and tables. Refusing to grow returns an error, which
/// traps the guest with a [`LimitExceeded`] the host can recognise.
pub(crate) struct Limiter {
    pub(crate) memory: u64,
}

/// Table elements a plugin may have; generous for any real plugin, bounding a hostile one.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory {
            return Err(wasmtime::Error::new(LimitExceeded::new(
                LimitKind::Memory,
                format_bytes(self.memory),
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
