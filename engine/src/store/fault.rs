//! Fault injection for the process tests (test-only hooks: unset, always, outside tests).
//!
//! - `SLUICE_FAULT_PAUSE_AFTER_COMMIT=N`: the process announces `sluice-fault: paused after
//!   commit N` on stderr right after its Nth durable commit and then stops making progress, so
//!   a test can SIGKILL it at exactly that point.
//! - `SLUICE_FAULT_STORAGE=RULE`: the database file's I/O fails on purpose while a file exists
//!   (a test creates and removes it to start and end the fault). `RULE` is one of
//!   `sync:eio:while=PATH` (every fsync fails with EIO), `write:eio:while=PATH` (every write
//!   fails with EIO), `nospace:while=PATH` (the disk is full: every write of a commit and
//!   every growing of the file fails with ENOSPC; a reopen may rewrite the blocks the file
//!   already has, as on ext4 or xfs, where allocated blocks need no space).
//!
//! Unset, this costs one relaxed atomic increment per commit and one load per I/O call.

use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static COMMITS: AtomicU64 = AtomicU64::new(0);

/// The variable naming the storage fault.
pub const STORAGE_VAR: &str = "SLUICE_FAULT_STORAGE";

fn pause_at() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| {
        std::env::var("SLUICE_FAULT_PAUSE_AFTER_COMMIT")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

pub(super) fn after_commit() {
    let n = COMMITS.fetch_add(1, Ordering::Relaxed) + 1;
    if pause_at() == Some(n) {
        eprintln!("sluice-fault: paused after commit {n}");
        loop {
            std::thread::park();
        }
    }
}

/// An I/O call on the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Write,
    SetLen,
    Sync,
}

/// What fails, and while which file exists.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    kind: Kind,
    while_exists: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SyncEio,
    WriteEio,
    NoSpace,
}

fn parse(spec: &str) -> Result<Rule, String> {
    let usage = || {
        format!(
            "{STORAGE_VAR}={spec:?}: expected sync:eio:while=PATH, write:eio:while=PATH or \
             nospace:while=PATH"
        )
    };
    let (kind, path) = spec.rsplit_once("while=").ok_or_else(usage)?;
    let kind = match kind {
        "sync:eio:" => Kind::SyncEio,
        "write:eio:" => Kind::WriteEio,
        "nospace:" => Kind::NoSpace,
        _ => return Err(usage()),
    };
    if path.is_empty() {
        return Err(usage());
    }
    Ok(Rule {
        kind,
        while_exists: PathBuf::from(path),
    })
}

fn rule() -> &'static Result<Option<Rule>, String> {
    static RULE: OnceLock<Result<Option<Rule>, String>> = OnceLock::new();
    RULE.get_or_init(|| match std::env::var(STORAGE_VAR) {
        Ok(spec) => parse(&spec).map(Some),
        Err(_) => Ok(None),
    })
}

/// Whether the storage hook is set: only then does a call need to know if it grows the file
/// (asking costs an `fstat` per write).
pub(super) fn hooked() -> bool {
    matches!(rule(), Ok(Some(_)))
}

/// Whether the storage hook is well formed (the store refuses to open otherwise).
pub(super) fn check() -> Result<(), String> {
    rule().as_ref().map(|_| ()).map_err(Clone::clone)
}

/// The error the hook injects into this call, if any: `grows` when the call makes the file
/// longer, `reopening` while the store reopens after a full disk.
pub(super) fn storage(call: Call, grows: bool, reopening: bool) -> Option<io::Error> {
    let Ok(Some(rule)) = rule() else {
        return None;
    };
    let hits = match rule.kind {
        Kind::SyncEio => call == Call::Sync,
        Kind::WriteEio => call == Call::Write,
        Kind::NoSpace => match call {
            Call::Write => grows || !reopening,
            Call::SetLen => grows,
            Call::Sync => false,
        },
    };
    if !hits || !rule.while_exists.exists() {
        return None;
    }
    Some(match rule.kind {
        Kind::NoSpace => io::Error::from_raw_os_error(28),
        Kind::SyncEio | Kind::WriteEio => io::Error::from_raw_os_error(5),
    })
}

#[cfg(test)]
mod tests {
    use super::{Kind, parse};

    #[test]
    fn the_storage_hook_reads_its_three_rules_and_refuses_anything_else() {
        assert_eq!(parse("sync:eio:while=/tmp/x").unwrap().kind, Kind::SyncEio);
        assert_eq!(parse("write:eio:while=/a").unwrap().kind, Kind::WriteEio);
        let full = parse("nospace:while=/tmp/full").unwrap();
        assert_eq!(
            (full.kind, full.while_exists.to_str()),
            (Kind::NoSpace, Some("/tmp/full"))
        );
        for bad in [
            "",
            "sync:eio",
            "sync:eio:while=",
            "read:eio:while=/x",
            "full",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("nospace:while=PATH"), "{err}");
        }
    }
}
