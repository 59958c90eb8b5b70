//! `sluice serve`, `sluice token`, and the client commands that talk to a server:
//! `release`, `approvals`, `audit`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use sluice::api::client::{Client, Reply};
use sluice::service::{Service, ServiceConfig, hash_token};

use super::Exit;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// The service configuration.
    #[arg(long, default_value = "sluice.toml")]
    config: PathBuf,
    /// Listen here instead of the configuration's `listen`.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Use this data directory instead of the configuration's `data-dir`.
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
}

/// Runs the service until SIGTERM or Ctrl-C: then it stops taking requests, lets running
/// tasks finish (up to `limits.shutdown-grace`), and exits 0.
pub(super) fn serve(args: ServeArgs) -> anyhow::Result<Exit> {
    let mut config = ServiceConfig::load(&args.config).map_err(anyhow::Error::msg)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let grace = config.limits.shutdown_grace;
        let service = Service::start(config)?;
        let address = listener.local_addr()?;
        // Tests and scripts wait for this line.
        eprintln!("sluice: serving on http://{address}");
        tracing::info!(%address, "serving");
        let stopping = service.clone();
        sluice::api::serve(listener, service.clone(), async move {
            terminated().await;
            stopping.stop_taking_work();
            eprintln!("sluice: stopping: no new requests; letting running tasks finish");
        })
        .await?;
        if !service.drain(grace).await {
            eprintln!(
                "sluice: stopping with tasks still running after {grace:?} (limits.shutdown-grace): they are recovered at the next start"
            );
        }
        anyhow::Ok(())
    })?;
    Ok(Exit::Success)
}

async fn terminated() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Print a new random API token and the sha256 to put in sluice.toml.
    New,
    /// Print the sha256 of a token read from standard input.
    Hash,
}

pub(super) fn token(command: TokenCommand) -> anyhow::Result<Exit> {
    match command {
        TokenCommand::New => {
            let mut bytes = [0u8; 24];
            getrandom(&mut bytes)?;
            let token = format!("slc_{}", hex::encode(bytes));
            println!("token:        {token}");
            println!("token-sha256: {}", hash_token(&token));
        }
        TokenCommand::Hash => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            println!("{}", hash_token(token.trim()));
        }
    }
    Ok(Exit::Success)
}

fn getrandom(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .context("reading /dev/urandom")
}

#[derive(Debug, Args)]
pub(super) struct Server {
    /// The Sluice server.
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The API token.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How to print results.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub(super) enum ReleaseCommand {
    /// Create a release of a pipeline on the server.
    Create {
        /// Pipeline name.
        pipeline: String,
        /// `alias=version`.
        #[arg(long = "artifact", value_name = "ALIAS=VERSION")]
        artifacts: Vec<String>,
        /// `name=value`.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// List releases on the server.
    List {
        /// Only this pipeline's.
        #[arg(long)]
        pipeline: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// Show one release.
    Show {
        /// Release name.
        release: String,
        #[command(flatten)]
        server: Server,
    },
    /// Abandon a release.
    Abandon {
        /// Release name.
        release: String,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ApprovalsCommand {
    /// List approvals (pending ones by default).
    List {
        /// Only those listing me as an approver.
        #[arg(long)]
        mine: bool,
        /// pending, approved, rejected, reassigned, canceled, skipped, expired or all.
        #[arg(long, default_value = "pending")]
        status: String,
        #[command(flatten)]
        server: Server,
    },
    /// Approve an approval.
    Approve(DecideArgs),
    /// Reject an approval.
    Reject(DecideArgs),
    /// Hand an approval to another user or group.
    Reassign {
        /// Approval id (see `sluice approvals list`).
        id: String,
        /// The new approver: a user or `group:NAME`.
        to: String,
        /// Why.
        #[arg(long, short, default_value = "")]
        comment: String,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Debug, Args)]
pub(super) struct DecideArgs {
    /// Approval id (see `sluice approvals list`).
    id: String,
    /// Why.
    #[arg(long, short, default_value = "")]
    comment: String,
    /// Decide for every approver (admins; audited as an override).
    #[arg(long = "override")]
    override_approvers: bool,
    /// Approve now, deploy at this time (RFC 3339, e.g. 2026-11-24T06:00:00Z).
    #[arg(long, value_name = "TIME")]
    defer_until: Option<String>,
    #[command(flatten)]
    server: Server,
}

/// `--server` and `--token` for commands that work locally unless given a server.
#[derive(Debug, Args)]
pub(super) struct Remote {
    /// Ask this Sluice server instead of working on the local data directory.
    #[arg(long, env = "SLUICE_SERVER")]
    server: Option<String>,
    /// The API token.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Remote {
    /// The server, when one was given.
    pub(super) fn server(self) -> Option<Server> {
        Some(Server {
            server: self.server?,
            token: self.token,
            output: Output::Table,
        })
    }
}

impl Server {
    fn client(&self) -> anyhow::Result<Client> {
        Client::new(&self.server, self.token.clone()).map_err(anyhow::Error::msg)
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Runs one request on a fresh runtime and turns an error status into an error.
fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let client = server.client()?;
    let reply: Reply = runtime()?
        .block_on(client.send(method, path, body.map(|b| b.to_string().into_bytes()), &[]))
        .map_err(anyhow::Error::msg)?;
    refused(&reply)?;
    Ok(reply.json())
}

/// An error status as an error that says what the server said.
fn refused(reply: &Reply) -> anyhow::Result<()> {
    let value = reply.json();
    if reply.status >= 400 {
        let message = value["error"]
            .as_str()
            .map_or_else(|| reply.text(), str::to_owned);
        let mut text = format!("{} ({})", message, reply.status);
        if let Some(diagnostics) = value["diagnostics"].as_array() {
            for d in diagnostics {
                text.push_str(&format!("\n{}", d.as_str().unwrap_or_default()));
            }
        }
        bail!(text);
    }
    Ok(())
}

fn print(server: &Server, value: &Value, table: impl FnOnce(&Value)) {
    match server.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Table => table(value),
    }
}

fn pairs(items: &[String], flag: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    Ok(super::release::pairs(items, flag)?
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect())
}

fn print_release(release: &Value) {
    println!(
        "{}  {}  (created by {})",
        release["name"].as_str().unwrap_or("?"),
        release["state"].as_str().unwrap_or("?"),
        release["creator"].as_str().unwrap_or("?")
    );
    for stage in release["stages"].as_array().into_iter().flatten() {
        println!(
            "  {:<20} {}",
            stage["name"].as_str().unwrap_or("?"),
            stage["state"].as_str().unwrap_or("?")
        );
    }
    for approval in release["approvals"].as_array().into_iter().flatten() {
        if approval["state"] == "pending" {
            println!(
                "  pending approval: {}",
                approval["id"].as_str().unwrap_or("?")
            );
        }
    }
}

pub(super) fn release(command: ReleaseCommand) -> anyhow::Result<Exit> {
    match command {
        ReleaseCommand::Create {
            pipeline,
            artifacts,
            vars,
            description,
            server,
        } => {
            let body = json!({
                "artifacts": pairs(&artifacts, "--artifact")?,
                "variables": pairs(&vars, "--var")?,
                "description": description,
            });
            let path = format!("/api/v1/pipelines/{pipeline}/releases");
            let release = call(&server, "POST", &path, Some(body))?;
            print(&server, &release, print_release);
        }
        ReleaseCommand::List { pipeline, server } => {
            let query = pipeline.map_or(String::new(), |p| format!("?pipeline={p}"));
            let list = call(&server, "GET", &format!("/api/v1/releases{query}"), None)?;
            print(&server, &list, |list| {
                for r in list["releases"].as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {:<20} {}",
                        r["name"].as_str().unwrap_or("?"),
                        r["state"].as_str().unwrap_or("?"),
                        r["creator"].as_str().unwrap_or("?")
                    );
                }
            });
        }
        ReleaseCommand::Show { release, server } => {
            let release = call(&server, "GET", &format!("/api/v1/releases/{release}"), None)?;
            print(&server, &release, print_release);
        }
        ReleaseCommand::Abandon { release, server } => {
            let path = format!("/api/v1/releases/{release}/abandon");
            let release = call(&server, "POST", &path, Some(json!({})))?;
            print(&server, &release, print_release);
        }
    }
    Ok(Exit::Success)
}

pub(super) fn approvals(command: ApprovalsCommand) -> anyhow::Result<Exit> {
    match command {
        ApprovalsCommand::List {
            mine,
            status,
            server,
        } => {
            let me = if mine { "&approver=me" } else { "" };
            let path = format!("/api/v1/approvals?status={status}{me}");
            let list = call(&server, "GET", &path, None)?;
            print(&server, &list, |list| {
                let approvals = list["approvals"].as_array().cloned().unwrap_or_default();
                if approvals.is_empty() {
                    println!("no {status} approvals");
                }
                for a in approvals {
                    let approvers: Vec<&str> = a["approvers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "{:<36} {:<9} approvers: {}",
                        a["id"].as_str().unwrap_or("?"),
                        a["state"].as_str().unwrap_or("?"),
                        approvers.join(", ")
                    );
                }
            });
        }
        ApprovalsCommand::Approve(args) => decide(args, "approve")?,
        ApprovalsCommand::Reject(args) => decide(args, "reject")?,
        ApprovalsCommand::Reassign {
            id,
            to,
            comment,
            server,
        } => {
            let path = format!("/api/v1/approvals/{id}/reassign");
            let release = call(
                &server,
                "POST",
                &path,
                Some(json!({"to": to, "comment": comment})),
            )?;
            print(&server, &release, print_release);
        }
    }
    Ok(Exit::Success)
}

fn decide(args: DecideArgs, verb: &str) -> anyhow::Result<()> {
    let path = format!("/api/v1/approvals/{}/{verb}", args.id);
    let mut body = json!({"comment": args.comment, "override": args.override_approvers});
    if let Some(time) = args.defer_until {
        body["defer-until"] = Value::String(time);
    }
    let release = call(&args.server, "POST", &path, Some(body))?;
    print(&args.server, &release, print_release);
    Ok(())
}

fn print_entry(e: &Value) {
    println!(
        "{} {:<22} r{:<4} {:<10} {}",
        e["at"],
        e["release"].as_str().unwrap_or("?"),
        e["revision"],
        e["actor"].as_str().unwrap_or("?"),
        e["what"].as_str().unwrap_or("?")
    );
}

pub(super) fn audit(release: Option<String>, follow: bool, server: Server) -> anyhow::Result<Exit> {
    let query = release.map_or(String::new(), |r| format!("&release={r}"));
    if follow {
        let path = format!("/api/v1/audit?follow=true{query}");
        follow_events(&server, &path, |event| match server.output {
            Output::Json => println!("{}", event.data),
            Output::Table => print_entry(&serde_json::from_str(&event.data).unwrap_or_default()),
        })?;
        return Ok(Exit::Success);
    }
    let list = call(&server, "GET", &format!("/api/v1/audit?{query}"), None)?;
    print(&server, &list, |list| {
        list["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .for_each(print_entry);
    });
    Ok(Exit::Success)
}

/// Prints a server-sent event stream's events until the server ends it.
fn follow_events(
    server: &Server,
    path: &str,
    mut each: impl FnMut(&sluice::api::client::ServerEvent),
) -> anyhow::Result<()> {
    let client = server.client()?;
    runtime()?.block_on(async {
        let mut events = match client.events(path).await {
            Ok(events) => events,
            Err(Ok(reply)) => {
                refused(&reply)?;
                bail!("the server answered {}", reply.status)
            }
            Err(Err(e)) => bail!(e),
        };
        while let Some(event) = events.next().await.map_err(anyhow::Error::msg)? {
            if event.event == "error" {
                bail!("{}", event.data);
            }
            each(&event);
        }
        Ok(())
    })
}

/// `sluice deploy RELEASE STAGE [--at TIME] --server ...`.
pub(super) fn deploy(
    release: &str,
    stage: &str,
    at: Option<String>,
    server: &Server,
) -> anyhow::Result<Exit> {
    let body = match at {
        Some(at) => json!({ "at": at }),
        None => json!({}),
    };
    stage_command(release, stage, "deploy", body, server)
}

/// `sluice cancel RELEASE STAGE --server ...`.
pub(super) fn cancel(release: &str, stage: &str, server: &Server) -> anyhow::Result<Exit> {
    stage_command(release, stage, "cancel", json!({}), server)
}

/// `sluice break-glass RELEASE STAGE --justification ... --server ...`.
pub(super) fn break_glass(
    release: &str,
    stage: &str,
    justification: &str,
    server: &Server,
) -> anyhow::Result<Exit> {
    let body = json!({ "justification": justification });
    stage_command(release, stage, "break-glass", body, server)
}

fn stage_command(
    release: &str,
    stage: &str,
    verb: &str,
    body: Value,
    server: &Server,
) -> anyhow::Result<Exit> {
    let path = format!("/api/v1/releases/{release}/stages/{stage}/{verb}");
    let release = call(server, "POST", &path, Some(body))?;
    print(server, &release, print_release);
    Ok(Exit::Success)
}

/// `sluice logs --server ...`: stored logs, or one task's followed live.
pub(super) fn logs(
    release: &str,
    stage: Option<String>,
    task: Option<String>,
    attempt: Option<u32>,
    follow: bool,
    server: &Server,
) -> anyhow::Result<Exit> {
    let view = call(server, "GET", &format!("/api/v1/releases/{release}"), None)?;
    let stages = view["stages"].as_array().cloned().unwrap_or_default();
    if let Some(stage) = &stage
        && !stages.iter().any(|s| s["name"] == stage.as_str())
    {
        bail!("release {release} has no stage `{stage}`");
    }
    if follow {
        let (Some(stage), Some(task)) = (&stage, &task) else {
            bail!(
                "--follow follows one task: give the stage and the task, e.g. `sluice logs {release} STAGE TASK -f`"
            );
        };
        let attempts = stages
            .iter()
            .find(|s| s["name"] == stage.as_str())
            .and_then(|s| s["attempts"].as_array().cloned())
            .unwrap_or_default();
        let Some(attempt) = attempt.or_else(|| {
            attempts
                .last()
                .and_then(|a| a["number"].as_u64())
                .map(|n| n as u32)
        }) else {
            bail!("stage `{stage}` of {release} has not started: nothing to follow yet");
        };
        let path = format!(
            "/api/v1/releases/{release}/stages/{stage}/attempts/{attempt}/tasks/{task}/log?follow=true"
        );
        follow_events(server, &path, |event| {
            if event.event == "line" {
                println!("{}", event.data);
            }
        })?;
        return Ok(Exit::Success);
    }
    for s in stages
        .iter()
        .filter(|s| stage.as_ref().is_none_or(|n| s["name"] == n.as_str()))
    {
        let name = s["name"].as_str().unwrap_or("?");
        for a in s["attempts"].as_array().into_iter().flatten() {
            let number = &a["number"];
            for t in a["tasks"].as_array().into_iter().flatten().filter(|t| {
                task.as_ref().is_none_or(|n| t["name"] == n.as_str()) && t["state"] != "pending"
            }) {
                let task_name = t["name"].as_str().unwrap_or("?");
                println!(
                    "== {name} / attempt {number} / {task_name} ({})",
                    t["state"].as_str().unwrap_or("?")
                );
                let path = format!(
                    "/api/v1/releases/{release}/stages/{name}/attempts/{number}/tasks/{task_name}/log"
                );
                let client = server.client()?;
                let reply = runtime()?
                    .block_on(client.get(&path))
                    .map_err(anyhow::Error::msg)?;
                match reply.status {
                    200 => print!("{}", reply.text()),
                    404 => println!("(no log stored yet)"),
                    _ => refused(&reply)?,
                }
            }
        }
    }
    Ok(Exit::Success)
}
