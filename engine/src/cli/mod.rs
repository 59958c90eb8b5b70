//! Command-line interface: flags (clap) and the commands they run.
//!
//! Exit codes: `0` success (a task that succeeded with issues included), `1` the work failed
//! (a task failed, a gate was unhealthy), `2` usage or validation error (bad flags, a plugin
//! that cannot be loaded), `3` the data store could not write (its disk is full, or an I/O
//! error: nothing unacknowledged was stored; free space or fix the disk, then `sluice resume`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod approve;
mod args;
mod client;
mod live;
mod plugin;
mod plugin_build;
mod plugin_push;
mod plugin_run;
mod release;
mod remote;
mod scaffold;
mod serve;
mod show;
mod spinner;
mod token;

/// Sluice: release pipelines whose every task is a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, max_term_width = 100)]
pub struct Cli {
    /// How diagnostics go to stderr: `text`, or `json` (one object per line, for log shippers).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SLUICE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The format of the process's own log (`tracing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a release of a pipeline and drive it to its end, in this process.
    Run(release::RunArgs),
    /// Drive every unfinished release in the data directory to its end (what a restart does).
    Resume(release::ResumeArgs),
    /// Check a pipeline: syntax, rules, plugins.
    Validate {
        /// The pipeline file.
        pipeline: std::path::PathBuf,
        /// The data directory whose compiled-plugin cache it uses (default: `.sluice` next to
        /// the pipeline, as `sluice run`).
        #[arg(long = "data-dir", env = "SLUICE_DATA_DIR", value_parser = args::absolute_dir)]
        data_dir: Option<std::path::PathBuf>,
    },
    /// List or show releases.
    #[command(subcommand)]
    Releases(release::ReleasesCommand),
    /// Print task logs of a release (from the data directory, or from a server with --server).
    Logs {
        /// Release name.
        release: String,
        /// Only this stage.
        stage: Option<String>,
        /// Only this task.
        task: Option<String>,
        /// Follow the task's log as it is written, until the task ends (needs --server, a
        /// stage and a task).
        #[arg(long, short)]
        follow: bool,
        /// With --follow: this attempt (default: the latest).
        #[arg(long)]
        attempt: Option<u32>,
        #[command(flatten)]
        data: release::DataDir,
        #[command(flatten)]
        remote: client::Remote,
    },
    /// Deploy (or redeploy, as a new attempt) one stage of a release: locally, driving it
    /// here, or on a server with --server.
    Deploy {
        /// Release name.
        release: String,
        /// Stage.
        stage: String,
        /// How approvals are decided (locally).
        #[arg(long, value_enum, default_value = "ask")]
        approve: approve::ApproveMode,
        /// With --server: deploy at this time (RFC 3339, e.g. 2026-11-24T06:00:00Z) instead
        /// of now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Deploy although a stage it comes after has not succeeded (admins, with
        /// --justification; audited). Without it such a deploy is refused.
        #[arg(long, requires = "justification")]
        out_of_order: bool,
        /// Why it cannot wait for the stages it comes after (with --out-of-order).
        #[arg(long, requires = "out_of_order")]
        justification: Option<String>,
        #[command(flatten)]
        data: release::DataDir,
        #[command(flatten)]
        remote: client::Remote,
    },
    /// Cancel a stage's running deployment on a server.
    Cancel {
        /// Release name.
        release: String,
        /// Stage.
        stage: String,
        #[command(flatten)]
        server: client::Server,
    },
    /// Let a deployment that waits out a freeze window go now, on a server (admins; audited).
    BreakGlass {
        /// Release name.
        release: String,
        /// Stage.
        stage: String,
        /// Why it cannot wait for the freeze to end (required).
        #[arg(long)]
        justification: String,
        #[command(flatten)]
        server: client::Server,
    },
    /// Work with plugins: write, build, inspect, compile and run one locally; the built-ins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Run the service: the HTTP API, releases driven until they end, approvals from anywhere.
    Serve(serve::ServeArgs),
    /// Run deployments for a server from this machine: an agent of one of its pools.
    Agent(agent::AgentArgs),
    /// The agents of a server: list, disable, enable.
    #[command(subcommand)]
    Agents(agent::AgentsCommand),
    /// Make API tokens for sluice.toml.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Releases on a server: create, list, show, abandon.
    #[command(subcommand)]
    Release(remote::ReleaseCommand),
    /// Approvals on a server: list, approve, reject, reassign.
    #[command(subcommand)]
    Approvals(remote::ApprovalsCommand),
    /// The audit trail on a server.
    Audit {
        /// Only this release's entries.
        #[arg(long)]
        release: Option<String>,
        /// Keep printing entries as they are committed.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        server: client::Server,
    },
    /// Print a shell completion script: `sluice completions bash > /etc/bash_completion.d/sluice`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
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
    /// The data store could not write: a full disk or an I/O error.
    Storage,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(match exit {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Storage => 3,
        })
    }
}

/// How an error ends the process: a store that could not write is [`Exit::Storage`].
pub fn exit_for(err: &anyhow::Error) -> Exit {
    use sluice::scheduler::EngineError;
    use sluice::store::StoreError;
    let storage = |e: &StoreError| {
        matches!(
            e,
            StoreError::NoSpace(_) | StoreError::Failed(_) | StoreError::Unavailable(_)
        )
    };
    let failed = err.chain().any(|cause| {
        cause.downcast_ref::<StoreError>().is_some_and(storage)
            || matches!(
                cause.downcast_ref::<EngineError>(),
                Some(EngineError::Store(e)) if storage(e)
            )
    });
    if failed { Exit::Storage } else { Exit::Usage }
}

/// The binary's fail-stop (the store's I/O failed other than for a full disk): say what failed
/// and that the process exits, then exit with [`Exit::Storage`] before anything else is
/// acknowledged.
pub fn fail_stop(reason: &str) {
    tracing::error!("the data store failed: {reason}");
    eprintln!(
        "sluice: the data store failed: {reason}; exiting now (code 3) so that a supervisor \
         restarts sluice and recovery runs; nothing unacknowledged was stored"
    );
    std::process::exit(3);
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Run(args) => release::run(args),
        Command::Resume(args) => release::resume(args),
        Command::Validate { pipeline, data_dir } => release::validate(&pipeline, data_dir),
        Command::Releases(command) => release::releases(command),
        Command::Logs {
            release,
            stage,
            task,
            follow,
            attempt,
            data,
            remote,
        } => match remote.server() {
            Some(server) => remote::logs(&release, stage, task, attempt, follow, &server),
            None if follow => anyhow::bail!(
                "--follow reads a running task's log from a server: give --server (or SLUICE_SERVER)"
            ),
            None => release::logs(&release, stage.as_deref(), task.as_deref(), &data),
        },
        Command::Deploy {
            release,
            stage,
            approve,
            at,
            out_of_order: _,
            justification,
            data,
            remote,
        } => match remote.server() {
            Some(server) => remote::deploy(&release, &stage, at, justification, &server),
            None if at.is_some() => anyhow::bail!(
                "--at schedules the deployment on a server: give --server (or SLUICE_SERVER)"
            ),
            None => release::deploy(&release, &stage, approve, justification, &data),
        },
        Command::Cancel {
            release,
            stage,
            server,
        } => remote::cancel(&release, &stage, &server),
        Command::BreakGlass {
            release,
            stage,
            justification,
            server,
        } => remote::break_glass(&release, &stage, &justification, &server),
        Command::Plugin(command) => plugin::run(command),
        Command::Serve(args) => serve::serve(args),
        Command::Agent(args) => agent::agent(args),
        Command::Agents(command) => agent::agents(command),
        Command::Token(command) => token::token(command),
        Command::Release(command) => remote::release(command),
        Command::Approvals(command) => remote::approvals(command),
        Command::Audit {
            release,
            follow,
            server,
        } => remote::audit(release, follow, server),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "sluice", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            Ok(Exit::Success)
        }
    }
}
