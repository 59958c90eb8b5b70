//! `sluice agent` (run deployments for a server, from this machine) and `sluice agents
//! list|disable|enable` (the server's agents, for people).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::Exit;
use super::client::{self, Server};
use sluice::agent::{Agent, AgentConfig, system_capabilities};
use sluice::types::demand::parse_pair;

/// `sluice agent`'s flags.
#[derive(Debug, Args)]
pub(super) struct AgentArgs {
    /// The Sluice server: `https://` (plain `http://` only on loopback: jobs carry secrets).
    #[arg(long, env = "SLUICE_SERVER")]
    server: String,
    /// Trust this CA certificate (PEM) for the server's, instead of the web's roots.
    #[arg(long, env = "SLUICE_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// This agent's name, unique among the server's agents.
    #[arg(long)]
    name: String,
    /// The pool it joins (its token must be allowed there in the server's sluice.toml).
    #[arg(long)]
    pool: String,
    /// A capability it offers: `docker` or `region=eu` (repeat). os, arch, hostname and
    /// sluice are reported on their own.
    #[arg(long = "capability", value_name = "KEY[=VALUE]")]
    capabilities: Vec<String>,
    /// A host directory tasks may be granted (repeat); none by default.
    #[arg(long = "allow-dir", value_name = "HOST_DIR", value_parser = super::args::absolute_dir)]
    allow_dirs: Vec<PathBuf>,
    /// Where compiled plugins, fetched plugins and workspaces go.
    #[arg(long, default_value = ".sluice-agent", value_parser = super::args::absolute_dir)]
    work_dir: PathBuf,
    /// Jobs at once.
    #[arg(long, default_value_t = 1)]
    max_jobs: u32,
    /// A file holding the agent token (else SLUICE_AGENT_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// On SIGTERM, how long running jobs may go on before the agent exits anyway (their
    /// leases are then lost: an idempotent task runs again elsewhere).
    #[arg(long, default_value = "60s", value_parser = sluice::types::limits::parse_duration)]
    grace: std::time::Duration,
}

/// Runs the agent until SIGTERM or Ctrl-C: then it takes no new job and lets each running
/// one finish, for at most `--grace`.
pub(super) fn agent(args: AgentArgs) -> anyhow::Result<Exit> {
    let token = match &args.token_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("--token-file {}", file.display()))?
            .trim()
            .to_owned(),
        None => std::env::var("SLUICE_AGENT_TOKEN").map_err(|_| {
            anyhow::anyhow!("give the agent token with --token-file or SLUICE_AGENT_TOKEN")
        })?,
    };
    if args.max_jobs == 0 {
        bail!("--max-jobs must be at least 1");
    }
    let mut capabilities = system_capabilities();
    for given in &args.capabilities {
        let (key, value) = parse_pair(given).map_err(|e| anyhow::anyhow!("--capability: {e}"))?;
        if capabilities.contains_key(&key)
            && ["os", "arch", "hostname", "sluice"].contains(&key.as_str())
        {
            bail!("--capability {key}: the agent reports `{key}` itself");
        }
        capabilities.insert(key, value.unwrap_or_default());
    }
    let config = AgentConfig {
        server: args.server,
        ca_file: args.ca_file,
        token,
        name: args.name,
        pool: args.pool,
        capabilities,
        allow_dirs: args.allow_dirs,
        work_dir: args.work_dir,
        max_jobs: args.max_jobs,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let agent = Agent::new(config.clone()).map_err(anyhow::Error::msg)?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut stopping = stopped.clone();
        let grace = args.grace;
        tokio::spawn(async move {
            super::serve::terminated().await;
            eprintln!(
                "sluice agent: stopping: no new job; letting running jobs finish (at most --grace {grace:?})"
            );
            let _ = stop.send(true);
        });
        // Tests and scripts wait for this line.
        eprintln!(
            "sluice agent: {} in pool {} asking {} for jobs",
            config.name, config.pool, config.server
        );
        let run = agent.run(stopped);
        tokio::pin!(run);
        tokio::select! {
            ran = &mut run => return ran.map_err(anyhow::Error::msg),
            _ = stopping.wait_for(|s| *s) => {}
        }
        match tokio::time::timeout(grace, run).await {
            Ok(ran) => ran.map_err(anyhow::Error::msg),
            Err(_) => {
                eprintln!(
                    "sluice agent: jobs still running after --grace {grace:?}: exiting; their leases will be lost"
                );
                Ok(())
            }
        }
    })?;
    Ok(Exit::Success)
}

/// `sluice agents ...`.
#[derive(Debug, Subcommand)]
pub(super) enum AgentsCommand {
    /// The agents the server has heard from: pool, online, capabilities, jobs.
    List {
        #[command(flatten)]
        server: Server,
    },
    /// Stop giving an agent new jobs (admins).
    Disable {
        /// The agent.
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// Give a disabled agent jobs again (admins).
    Enable {
        /// The agent.
        name: String,
        #[command(flatten)]
        server: Server,
    },
}

pub(super) fn agents(command: AgentsCommand) -> anyhow::Result<Exit> {
    let (server, value) = match command {
        AgentsCommand::List { server } => {
            let value = client::call(&server, "GET", "/api/v1/agents", None)?;
            (server, value)
        }
        AgentsCommand::Disable { name, server } => {
            let value = client::call(
                &server,
                "POST",
                &format!("/api/v1/agents/{name}/disable"),
                None,
            )?;
            (server, value)
        }
        AgentsCommand::Enable { name, server } => {
            let value = client::call(
                &server,
                "POST",
                &format!("/api/v1/agents/{name}/enable"),
                None,
            )?;
            (server, value)
        }
    };
    client::print(&server, &value, |value| {
        let rows = value
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![value.clone()]);
        println!(
            "{:<20} {:<14} {:<8} {:<9} JOBS / CAPABILITIES",
            "NAME", "POOL", "ONLINE", "DISABLED"
        );
        for agent in rows {
            let caps: Vec<String> = agent["capabilities"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            let jobs: Vec<&str> = agent["jobs"]
                .as_array()
                .map(|j| j.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "{:<20} {:<14} {:<8} {:<9} {} / {}",
                sluice::types::escape(agent["name"].as_str().unwrap_or("")),
                agent["pool"].as_str().unwrap_or(""),
                agent["online"].as_bool().unwrap_or(false),
                agent["disabled"].as_bool().unwrap_or(false),
                if jobs.is_empty() {
                    "-".to_owned()
                } else {
                    jobs.join(",")
                },
                sluice::types::escape(&caps.join(" ")),
            );
        }
    });
    Ok(Exit::Success)
}
