//! Enforcing [`Limits`](crate::types::Limits) inside wasmtime: one memory budget per call. Time
//! is bounded by epochs plus a timeout around the call (`call.rs`), log volume in `log.rs`,
//! output size after the call; the limit values themselves are plain types in
//! [`crate::types::limits`].
//!
//! `limits.memory` is the budget of the whole call, not of one linear memory: every memory and
//! every table of every core instance the component creates is charged to it, and the number
//! of instances, memories and tables is capped at what a real plugin needs. What the guest
//! makes the host hold (wasi:http fields and bodies, open files, streams: entries of the
//! store's resource table) is charged to the same call as a reserved share of it
//! ([`HostShare`]).

use super::sandbox::State;
use crate::types::limits::{LimitExceeded, LimitKind, format_bytes};

/// Core instances a call may create. A component built by the Rust toolchain has three or
/// four (the program and wit-component's shims); the rest is headroom.
pub(crate) const MAX_INSTANCES: usize = 16;
/// Linear memories a call may create, in all its instances together. Such a component has one.
pub(crate) const MAX_MEMORIES: usize = 2;
/// Tables a call may create, in all its instances together. Such a component has two or three.
pub(crate) const MAX_TABLES: usize = 8;
/// What one table element is charged: a function reference is a pointer on the host.
const TABLE_ELEMENT_BYTES: u64 = 8;

/// Bounds the memories and tables of one call's store, together. Refusing to grow returns an
/// error, which traps the guest with a [`LimitExceeded`] the host can recognise.
pub(crate) struct Limiter {
    /// Bytes the guest may hold in memories and tables (the call's budget less the host share).
    budget: u64,
    /// Bytes held now: all memories' sizes plus all tables' elements.
    used: u64,
    /// The call's `limits.memory`, for the error message.
    limit: u64,
}

impl Limiter {
    pub(crate) fn new(memory: u64, host: &HostShare) -> Self {
        Self {
            budget: memory.saturating_sub(host.bytes()),
            used: 0,
            limit: memory,
        }
    }

    /// Charges `extra` bytes, or refuses them with the memory limit named.
    fn charge(&mut self, extra: u64) -> wasmtime::Result<bool> {
        match self.used.checked_add(extra) {
            Some(total) if total <= self.budget => {
                self.used = total;
                Ok(true)
            }
            _ => Err(wasmtime::Error::new(exceeded(self.limit))),
        }
    }
}

fn exceeded(memory: u64) -> LimitExceeded {
    LimitExceeded::new(LimitKind::Memory, format_bytes(memory))
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.charge(desired.saturating_sub(current) as u64)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current) as u64;
        self.charge(elements.saturating_mul(TABLE_ELEMENT_BYTES))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// Puts a call's store under its limiter and caps the guest's own resource handles.
pub(crate) fn bound(store: &mut wasmtime::Store<State>) {
    store.limiter(|state| &mut state.limiter);
    store.set_max_component_handles(HostShare::MAX_HANDLES);
}

/// The part of a call's memory budget reserved for what the guest makes the host hold: a
/// number of resource-table entries, each of bounded size (a wasi:http `fields` object at most
/// [`HostShare::FIELD_BYTES`], an outgoing body's buffer at most two chunks of
/// [`HostShare::CHUNK_BYTES`]).
pub(crate) struct HostShare {
    entries: usize,
}

impl HostShare {
    /// The most a wasi:http `fields` object may hold (wasmtime's default is 128 KiB).
    pub(crate) const FIELD_BYTES: usize = 16 << 10;
    /// The largest write into an outgoing body (wasmtime's default is 1 MiB); a body buffers
    /// at most two.
    pub(crate) const CHUNK_BYTES: usize = 8 << 10;
    /// What one resource-table entry is charged.
    const ENTRY_BYTES: u64 = 32 << 10;
    /// Entries a call may always have (8 MiB), and at most has (64 MiB): a real plugin holds a
    /// handful (preopens, stdio, a request and its streams).
    const MIN_ENTRIES: usize = 256;
    const MAX_ENTRIES: usize = 2048;
    /// Guest-defined resource handles a call may hold (wasmtime's default is 100,000).
    pub(crate) const MAX_HANDLES: usize = 4 * Self::MAX_ENTRIES;

    /// A quarter of `memory`, within the bounds above.
    pub(crate) fn of(memory: u64) -> Self {
        let entries = (memory / 4 / Self::ENTRY_BYTES)
            .clamp(Self::MIN_ENTRIES as u64, Self::MAX_ENTRIES as u64);
        Self {
            entries: entries as usize,
        }
    }

    /// Entries the call's resource table may hold.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    fn bytes(&self) -> u64 {
        self.entries as u64 * Self::ENTRY_BYTES
    }
}

/// Recognises a call that failed on one of the caps above rather than on the budget itself:
/// wasmtime refuses too many instances, memories or tables, a full resource table and an
/// oversized wasi:http `fields` with errors of its own. They become the memory limit of the
/// call, like the budget, saying which cap it was.
pub(crate) fn recognise(error: &wasmtime::Error, memory: u64) -> Option<LimitExceeded> {
    use wasmtime_wasi_http::FieldMapError;
    let cap = error.chain().find_map(|cause| {
        if cause
            .downcast_ref::<wasmtime::component::ResourceTableError>()
            .is_some()
        {
            let entries = HostShare::of(memory).entries();
            return Some(format!("{entries} host resources at a time"));
        }
        if let Some(FieldMapError::TooManyFields | FieldMapError::TotalSizeTooBig) =
            cause.downcast_ref::<FieldMapError>()
        {
            let most = format_bytes(HostShare::FIELD_BYTES as u64);
            return Some(format!("a wasi:http `fields` holds at most {most}"));
        }
        // wasmtime's words for a count past `instances()`, `memories()` or `tables()`; a unit
        // test below pins them, so a wasmtime that words it differently fails it.
        cause
            .to_string()
            .starts_with("resource limit exceeded: ")
            .then(|| {
                format!(
                    "in at most {MAX_INSTANCES} instances, {MAX_MEMORIES} memories and \
                     {MAX_TABLES} tables"
                )
            })
    })?;
    Some(LimitExceeded::new(
        LimitKind::Memory,
        format!("{} ({cap})", format_bytes(memory)),
    ))
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter as _;

    use super::*;

    #[test]
    fn all_memories_and_tables_share_one_budget() {
        let memory = 32 << 20;
        let host = HostShare::of(memory);
        let mut limiter = Limiter::new(memory, &host);
        let budget = memory - host.bytes();
        // Two memories, each well under the budget, together over it.
        let half = (budget / 2) as usize;
        assert!(limiter.memory_growing(0, half, None).unwrap());
        assert!(limiter.memory_growing(0, half - 65536, None).unwrap());
        let err = limiter.memory_growing(0, 2 * 65536, None).unwrap_err();
        let limit = err.downcast_ref::<LimitExceeded>().unwrap();
        assert_eq!(limit.kind, LimitKind::Memory);
        assert_eq!(limit.limit, "32 MiB");
        // A table is charged to the same budget: what is left fits 8 KiB of elements, no more.
        assert!(limiter.table_growing(0, 1024, None).unwrap());
        assert!(limiter.table_growing(1024, 1 << 20, None).is_err());
        // Growing from the current size charges only the difference.
        let mut limiter = Limiter::new(memory, &host);
        for pages in 1..=(budget / 65536) as usize {
            assert!(
                limiter
                    .memory_growing((pages - 1) * 65536, pages * 65536, None)
                    .unwrap()
            );
        }
        assert!(
            limiter
                .memory_growing(budget as usize, budget as usize + 65536, None)
                .is_err()
        );
    }

    #[test]
    fn the_host_share_is_a_bounded_quarter_of_the_budget() {
        assert_eq!(HostShare::of(256 << 20).entries(), 2048);
        assert_eq!(HostShare::of(32 << 20).entries(), 256);
        assert_eq!(HostShare::of(1 << 20).entries(), 256);
        assert_eq!(HostShare::of(64 << 30).entries(), 2048);
        // A budget smaller than the host share leaves the guest nothing, never a wrap.
        let limiter = Limiter::new(1 << 20, &HostShare::of(1 << 20));
        assert_eq!(limiter.budget, 0);
    }

    /// Instantiates a core module of `wat` in a store under a call's limiter.
    fn instantiate(wat: &str, memory: u64) -> wasmtime::Result<()> {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let mut store = wasmtime::Store::new(&engine, Limiter::new(memory, &HostShare::of(memory)));
        store.limiter(|limiter| limiter);
        wasmtime::Instance::new(&mut store, &module, &[]).map(drop)
    }

    #[test]
    fn wasmtime_count_errors_and_a_full_resource_table_are_recognised() {
        // wasmtime's own error for one memory too many, as it words it.
        let memories = "(module (memory 0) (memory 0) (memory 0))";
        let count = instantiate(memories, 32 << 20).unwrap_err();
        let caps = "32 MiB (in at most 16 instances, 2 memories and 8 tables)";
        assert_eq!(
            recognise(&count, 32 << 20).unwrap().limit,
            caps,
            "{count:#}"
        );
        let tables = format!("(module {})", "(table 0 funcref) ".repeat(MAX_TABLES + 1));
        let count = instantiate(&tables, 32 << 20).unwrap_err();
        assert_eq!(
            recognise(&count, 32 << 20).unwrap().limit,
            caps,
            "{count:#}"
        );
        // Within the caps, within the budget: instantiated.
        instantiate("(module (memory 1) (memory 1) (table 8 funcref))", 32 << 20).unwrap();
        // Two memories over the budget together: the budget's own error.
        let big = instantiate("(module (memory 200) (memory 200))", 32 << 20).unwrap_err();
        assert_eq!(
            big.downcast_ref::<LimitExceeded>(),
            Some(&exceeded(32 << 20))
        );

        let mut table = wasmtime::component::ResourceTable::new();
        table.set_max_capacity(0);
        let full = wasmtime::Error::new(table.push(()).unwrap_err()).context("[new_fields]");
        let limit = recognise(&full, 32 << 20).unwrap();
        assert_eq!(limit.kind, LimitKind::Memory);
        assert_eq!(limit.limit, "32 MiB (256 host resources at a time)");
        let other = wasmtime::Error::msg("wasm trap: unreachable");
        assert_eq!(recognise(&other, 32 << 20), None);
    }

    #[test]
    fn the_built_in_plugins_fit_the_caps() {
        let engine =
            wasmtime::Engine::new(wasmtime::Config::new().wasm_component_model(true)).unwrap();
        for builtin in crate::builtin::BUILTINS {
            let component = wasmtime::component::Component::new(&engine, builtin.bytes).unwrap();
            let needs = component.resources_required().unwrap();
            assert!(
                needs.num_memories as usize <= MAX_MEMORIES,
                "{}",
                builtin.name
            );
            assert!(needs.num_tables as usize <= MAX_TABLES, "{}", builtin.name);
        }
    }
}
