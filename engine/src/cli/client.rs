//! Talking to a server: the connection flags (`--server`, `--token`, `--output`), one request
//! with an error status turned into an error, printing a reply, following an event stream.

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde_json::Value;
use sluice::api::client::{Client, Reply, ServerEvent};
use sluice::types::text;

/// The server a command talks to, how it authenticates, and how results are printed.
#[derive(Debug, Args)]
pub(super) struct Server {
    /// The Sluice server.
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    #[command(flatten)]
    token: Token,
    /// Trust this CA certificate (PEM) for an https:// server, instead of the web's roots.
    #[arg(long, env = "SLUICE_CA_FILE", value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
    /// How to print results.
    #[arg(long, value_enum, default_value = "table")]
    pub(super) output: Output,
}

/// `--token`, for [`Server`] and [`Remote`] alike.
#[derive(Debug, Args)]
struct Token {
    /// The API token.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Output {
    Table,
    Json,
}

/// `--server` and `--token` for commands that work locally unless given a server.
#[derive(Debug, Args)]
pub(super) struct Remote {
    /// Ask this Sluice server instead of working on the local data directory.
    #[arg(long, env = "SLUICE_SERVER")]
    server: Option<String>,
    #[command(flatten)]
    token: Token,
    /// Trust this CA certificate (PEM) for an https:// server, instead of the web's roots.
    #[arg(long, env = "SLUICE_CA_FILE", value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
}

impl Remote {
    /// The server, when one was given.
    pub(super) fn server(self) -> Option<Server> {
        Some(Server {
            server: self.server?,
            token: self.token,
            ca_file: self.ca_file,
            output: Output::Table,
        })
    }
}

impl Server {
    pub(super) fn client(&self) -> anyhow::Result<Client> {
        Client::trusting(
            &self.server,
            self.token.token.clone(),
            self.ca_file.as_deref(),
        )
        .map_err(anyhow::Error::msg)
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Runs one request on a fresh runtime and turns an error status into an error.
pub(super) fn call(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let client = server.client()?;
    let reply: Reply = runtime()?
        .block_on(client.send(method, path, body.map(|b| b.to_string().into_bytes()), &[]))
        .map_err(anyhow::Error::msg)?;
    refused(&reply)?;
    Ok(reply.json())
}

/// An error status as an error that says what the server said.
pub(super) fn refused(reply: &Reply) -> anyhow::Result<()> {
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

pub(super) fn print(server: &Server, value: &Value, table: impl FnOnce(&Value)) {
    match server.output {
        Output::Json => println!(
            "{}",
            text::json(&serde_json::to_string_pretty(value).unwrap_or_default())
        ),
        Output::Table => table(value),
    }
}

/// Prints a server-sent event stream's events until it is over: a log's `end`, or the server
/// stopping. A stream the server ends after `limits.stream-max` is opened again after the last
/// event received (`Last-Event-ID`), so nothing is missed or printed twice.
pub(super) fn follow_events(
    server: &Server,
    path: &str,
    mut each: impl FnMut(&ServerEvent),
) -> anyhow::Result<()> {
    let client = server.client()?;
    runtime()?.block_on(async {
        let (mut last, mut again): (Option<String>, bool) = (None, false);
        loop {
            let mut events = match client.events_after(path, last.as_deref()).await {
                Ok(events) => events,
                // A stopping server ended the stream and takes no new one: that is the end.
                Err(Ok(reply)) if again && reply.status == 503 => return Ok(()),
                Err(Err(_)) if again => return Ok(()),
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
                if event.event == "end" {
                    return Ok(());
                }
                if event.id.is_some() {
                    last.clone_from(&event.id);
                }
            }
            again = true;
        }
    })
}
