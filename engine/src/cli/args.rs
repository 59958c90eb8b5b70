//! Flag groups more than one command takes, each flag declared once: what a new release is made
//! with (`sluice run` locally, `sluice release create` on a server) and how a release driven in
//! this process decides approvals and ends (`sluice run`, `sluice resume`).

use anyhow::bail;
use clap::Args;
use sluice::types::Escaped;

use super::approve::ApproveMode;

/// A `--data-dir` as given, made absolute against the working directory (without touching
/// the disk): every path the engine builds on it (workspaces, grants) is then absolute too.
pub(super) fn absolute_dir(text: &str) -> Result<std::path::PathBuf, String> {
    std::path::absolute(text).map_err(|e| format!("`{text}` is not a usable directory path: {e}"))
}

/// What a new release is made with. `sluice release create` words the help shorter (see
/// `remote::ReleaseCommand::Create`); the flags are the same.
#[derive(Debug, Args)]
pub(super) struct ReleaseInputs {
    /// Choose an artifact version: `alias=version` (default: the pipeline's selector).
    #[arg(long = "artifact", value_name = "ALIAS=VERSION")]
    artifacts: Vec<String>,
    /// Set a variable at release time: `name=value` (only a variable the pipeline declares
    /// `settable = true`).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// Describe the release.
    #[arg(long)]
    pub(super) description: Option<String>,
}

impl ReleaseInputs {
    /// `--artifact`s as (alias, version).
    pub(super) fn artifacts(&self) -> anyhow::Result<Vec<(String, String)>> {
        pairs(&self.artifacts, "--artifact")
    }

    /// `--var`s as (name, value).
    pub(super) fn variables(&self) -> anyhow::Result<Vec<(String, String)>> {
        pairs(&self.vars, "--var")
    }
}

fn pairs(items: &[String], flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("{flag} `{}`: write NAME=VALUE", Escaped(item)),
        })
        .collect()
}

/// How a release driven here decides approvals, and whether a partial success counts as one:
/// `run` and `resume` alike (`resume` words the second for every release it drives).
#[derive(Debug, Args)]
pub(super) struct Driving {
    /// How approvals are decided.
    #[arg(long, value_enum, default_value = "ask")]
    pub(super) approve: ApproveMode,
    /// Exit 0 when the release only partially succeeded.
    #[arg(long)]
    pub(super) allow_partial: bool,
}
