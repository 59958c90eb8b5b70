//! The sandbox: every hostile behaviour is contained, every limit names itself, and the four
//! kinds of failure (plugin error, limit, panic, trap) stay distinct.
//!
//! One module per concern: grants, limits and failure kinds, resource bombs, files that are
//! not files, floods of empty items, masking, a plugin's faults in one line, what a task sees
//! and reports, what a hostile plugin's text looks like where it is printed, and the same
//! sandbox around code from either compiler.

mod bombs;
mod cache;
mod faults;
mod files;
mod floods;
mod grants;
mod limits;
mod masking;
mod plugin_files;
mod tasks;
pub(crate) mod terminal;
mod tiers;

use sluice::plugin::Sandbox;
use sluice::types::{Access, Failure, Grants, LimitKind, PluginError};

use crate::support::tight;

/// A granted directory next to a secret outside it.
struct Fixture {
    _root: tempfile::TempDir,
    granted: std::path::PathBuf,
    secret: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let granted = root.path().join("granted");
    std::fs::create_dir(&granted).unwrap();
    std::fs::write(granted.join("inside.txt"), "inside").unwrap();
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET").unwrap();
    Fixture {
        _root: root,
        granted,
        secret,
    }
}

fn with_dir(granted: &std::path::Path, access: Access) -> Sandbox {
    Sandbox {
        grants: Grants::none().dir(granted, "/data", access).unwrap(),
        ..tight()
    }
}

fn plugin_failure(failure: &Failure) -> &str {
    match failure {
        Failure::Plugin(PluginError::Failed(message)) => message,
        other => panic!("expected the plugin to report a failure, got: {other}"),
    }
}

fn limit(failure: &Failure) -> LimitKind {
    match failure {
        Failure::Limit(limit) => limit.kind,
        other => panic!("expected a limit, got: {other}"),
    }
}
