//! The client commands that talk to a server: `release`, `approvals`, `audit`, and `deploy`,
//! `cancel`, `break-glass` and `logs` given `--server`.

use anyhow::bail;
use clap::{Arg, Args, Subcommand};
use serde_json::{Value, json};

use sluice::types::{Escaped, text};

use super::Exit;
use super::args::ReleaseInputs;
use super::client::{Output, Server, call, follow_events, print, refused, runtime};

#[derive(Debug, Subcommand)]
pub(super) enum ReleaseCommand {
    /// Create a release of a pipeline on the server.
    #[command(mut_args(create_help))]
    Create {
        /// Pipeline name.
        pipeline: String,
        #[command(flatten)]
        inputs: ReleaseInputs,
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
    Show(ReleaseArgs),
    /// Abandon a release.
    Abandon(ReleaseArgs),
}

/// `release create` words the help of the [`ReleaseInputs`] flags shorter than `sluice run`.
fn create_help(arg: Arg) -> Arg {
    match arg.get_id().as_str() {
        "artifacts" => arg.help("`alias=version`"),
        "vars" => arg.help("`name=value`"),
        "description" => arg.help("Free text"),
        _ => arg,
    }
}

/// One release on the server.
#[derive(Debug, Args)]
pub(super) struct ReleaseArgs {
    /// Release name.
    release: String,
    #[command(flatten)]
    server: Server,
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
        #[command(flatten)]
        approval: Approval,
        /// The new approver: a user or `group:NAME`.
        to: String,
        #[command(flatten)]
        server: Server,
    },
}

/// Which approval, and why it is decided or handed on.
#[derive(Debug, Args)]
pub(super) struct Approval {
    /// Approval id (see `sluice approvals list`).
    id: String,
    /// Why.
    #[arg(long, short, default_value = "")]
    comment: String,
}

#[derive(Debug, Args)]
pub(super) struct DecideArgs {
    #[command(flatten)]
    approval: Approval,
    /// Decide for every approver (admins; audited as an override).
    #[arg(long = "override")]
    override_approvers: bool,
    /// Approve now, deploy at this time (RFC 3339, e.g. 2026-11-24T06:00:00Z).
    #[arg(long, value_name = "TIME")]
    defer_until: Option<String>,
    #[command(flatten)]
    server: Server,
}

/// Pairs as the JSON object the API takes.
fn object(pairs: Vec<(String, String)>) -> serde_json::Map<String, Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

fn print_release(release: &Value) {
    println!(
        "{}  {}  (created by {})",
        release["name"].as_str().unwrap_or("?"),
        release["state"].as_str().unwrap_or("?"),
        Escaped(release["creator"].as_str().unwrap_or("?"))
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
            inputs,
            server,
        } => {
            let body = json!({
                "artifacts": object(inputs.artifacts()?),
                "variables": object(inputs.variables()?),
                "description": inputs.description,
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
                        Escaped(r["creator"].as_str().unwrap_or("?"))
                    );
                }
            });
        }
        ReleaseCommand::Show(ReleaseArgs { release, server }) => {
            let release = call(&server, "GET", &format!("/api/v1/releases/{release}"), None)?;
            print(&server, &release, print_release);
        }
        ReleaseCommand::Abandon(ReleaseArgs { release, server }) => {
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
            // The largest page the API gives; the total says whether there are more.
            let path = format!("/api/v1/approvals?status={status}{me}&limit=500");
            let list = call(&server, "GET", &path, None)?;
            print(&server, &list, |list| {
                let approvals = list["approvals"].as_array().cloned().unwrap_or_default();
                if approvals.is_empty() {
                    println!("no {status} approvals");
                }
                let total = list["total"].as_u64().unwrap_or_default();
                if total > approvals.len() as u64 {
                    println!(
                        "the first {} of {total} {status} approvals (the API pages the rest: \
                         GET /api/v1/approvals?status={status}&offset={})",
                        approvals.len(),
                        approvals.len()
                    );
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
                        Escaped(&approvers.join(", "))
                    );
                }
            });
        }
        ApprovalsCommand::Approve(args) => decide(args, "approve")?,
        ApprovalsCommand::Reject(args) => decide(args, "reject")?,
        ApprovalsCommand::Reassign {
            approval: Approval { id, comment },
            to,
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
    let path = format!("/api/v1/approvals/{}/{verb}", args.approval.id);
    let mut body = json!({"comment": args.approval.comment, "override": args.override_approvers});
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
        Escaped(e["release"].as_str().unwrap_or("?")),
        e["revision"],
        Escaped(e["actor"].as_str().unwrap_or("?")),
        Escaped(e["what"].as_str().unwrap_or("?"))
    );
}

pub(super) fn audit(release: Option<String>, follow: bool, server: Server) -> anyhow::Result<Exit> {
    let query = release.map_or(String::new(), |r| format!("&release={r}"));
    if follow {
        let path = format!("/api/v1/audit?follow=true{query}");
        follow_events(&server, &path, |event| match server.output {
            Output::Json => println!("{}", text::json(&event.data)),
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

/// `sluice deploy RELEASE STAGE [--at TIME] --server ...`.
pub(super) fn deploy(
    release: &str,
    stage: &str,
    at: Option<String>,
    out_of_order: Option<String>,
    server: &Server,
) -> anyhow::Result<Exit> {
    let mut body = match at {
        Some(at) => json!({ "at": at }),
        None => json!({}),
    };
    if let Some(justification) = out_of_order {
        body["out-of-order"] = json!(true);
        body["justification"] = json!(justification);
    }
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
                println!("{}", Escaped(&event.data));
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
                    200 => reply
                        .text()
                        .lines()
                        .for_each(|line| println!("{}", Escaped(line))),
                    404 => println!("(no log stored yet)"),
                    _ => refused(&reply)?,
                }
            }
        }
    }
    Ok(Exit::Success)
}
