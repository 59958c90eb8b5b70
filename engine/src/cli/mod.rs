//! Command-line interface: flags (clap) and the commands they run.
//!
//! Exit codes: `0` success (a task that succeeded with issues included), `1` the work failed
//! (a task failed, a gate was unhealthy), `2` usage or validation error (bad flags, a plugin
//! that cannot be loaded).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod plugin;

/// Sluice: release pipelines whose every task is a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugins: list the built-ins, inspect a component, run one locally.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything succeeded.
    Success,
    /// The work failed: a task failed, a gate was unhealthy.
    Failed,
    /// Bad usage or invalid input.
    Usage,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(match exit {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
        })
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Plugin(command) => plugin::run(command),
    }
}
