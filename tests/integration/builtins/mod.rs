//! The built-in plugins that reach outside the engine (issue #15): `http-request` against a
//! scripted API, `template` over JSON, YAML, TOML and plain files, `http-source` against a
//! scripted artifact store with hostile archives. Each runs as shipped, in the sandbox.

mod http_request;
mod http_source;
mod oci_plugins;
mod oci_source;
mod registry_example;
mod template;

use std::path::Path;

use sluice::plugin::Sandbox;
use sluice::types::{Access, Failure, Grants, PluginError, Variable};

use crate::support::tight;

/// A sandbox granting `hosts` and the directories `dirs` (host, guest, access).
pub(crate) fn sandbox(hosts: &[String], dirs: &[(&Path, &str, Access)]) -> Sandbox {
    let mut grants = Grants::none();
    for host in hosts {
        grants = grants.host(host.clone()).unwrap();
    }
    for (host, guest, access) in dirs {
        grants = grants.dir(*host, *guest, *access).unwrap();
    }
    Sandbox { grants, ..tight() }
}

pub(crate) fn variable(name: &str, value: &str, secret: bool) -> Variable {
    Variable {
        name: name.into(),
        value: value.into(),
        secret,
        sealed: None,
    }
}

/// The message of a plugin's own failure; panics on any other outcome.
pub(crate) fn failure<T: std::fmt::Debug>(result: Result<T, Failure>) -> String {
    match result {
        Err(Failure::Plugin(PluginError::Failed(m) | PluginError::InvalidConfig(m))) => m,
        other => panic!("expected the plugin to fail, got {other:?}"),
    }
}
