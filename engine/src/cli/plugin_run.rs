//! `sluice plugin run`: one plugin called once, locally, in the sandbox a pipeline would give
//! it — its flags (grants, limits, variables), the call, and what it printed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use sluice::plugin::{HostConfig, PluginHost, Sandbox, World};
use sluice::types::{
    Access, Context, Escaped, Failure, Grants, LogEvent, TaskInput, Variable, grants, limits,
};

use super::Exit;
use super::plugin::{cwd, reference};
use super::scaffold::Manifest;

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// A component file, or a built-in plugin name (default: the component `sluice plugin
    /// build` made of the project here).
    plugin: Option<String>,
    /// The plugin's configuration, as a TOML file (what a pipeline writes under `config`).
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Which world to call when the plugin implements several.
    #[arg(long, value_enum)]
    world: Option<WorldArg>,
    /// Grant a directory: `HOST:GUEST[:ro|rw]` (read-only unless `:rw`; a read-write
    /// directory is created if missing).
    #[arg(long = "grant-dir", value_name = "HOST:GUEST[:ro|rw]")]
    grant_dirs: Vec<String>,
    /// Grant an environment variable, by name, with its value from this environment
    /// (or `NAME=VALUE`).
    #[arg(long = "grant-env", value_name = "NAME")]
    grant_env: Vec<String>,
    /// Grant outbound HTTP to a host: `host`, `host:port` or `*.domain`.
    #[arg(long = "grant-host", value_name = "HOST")]
    grant_hosts: Vec<String>,
    /// A variable for the task: `NAME=VALUE`.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// A secret variable for the task, masked in its log: `NAME=VALUE`.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    secrets: Vec<String>,
    /// Time limit for the call, e.g. `30s`, `5m`.
    #[arg(long, default_value = "10m")]
    timeout: String,
    /// Memory limit, e.g. `64MiB`.
    #[arg(long, default_value = "256MiB")]
    memory: String,
    /// Log volume limit, e.g. `8MiB`.
    #[arg(long = "log-limit", default_value = "8MiB")]
    log_limit: String,
    /// Output size limit, e.g. `1MiB`.
    #[arg(long = "output-limit", default_value = "1MiB")]
    output_limit: String,
    /// WebAssembly stack limit, e.g. `512KiB`.
    #[arg(long, default_value = "512KiB")]
    stack: String,
    /// For an artifact source: fetch this version (into `--into`) instead of listing versions.
    #[arg(long, value_name = "VERSION", requires = "into")]
    fetch: Option<String>,
    /// For `--fetch`: the host directory to fetch into (granted read-write as `/artifact`).
    #[arg(long, value_name = "DIR")]
    into: Option<PathBuf>,
    /// Where compiled components are cached.
    #[arg(long = "data-dir", default_value = ".sluice", env = "SLUICE_DATA_DIR", value_parser = super::args::absolute_dir)]
    data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WorldArg {
    Task,
    Gate,
    ArtifactSource,
}

/// The plugin `run` was given, or else the component of the project in `cwd`, and the world
/// the project says it exports.
fn plugin_or_project(given: Option<&str>, cwd: &Path) -> anyhow::Result<(String, Option<World>)> {
    if let Some(given) = given {
        return Ok((given.to_owned(), None));
    }
    let manifest = Manifest::read(cwd).context("name the plugin to run")?;
    let component = cwd.join(manifest.component());
    if !component.is_file() {
        bail!(
            "{} is not built yet: run `sluice plugin build` first",
            component.display()
        );
    }
    let world = manifest.kind.plugin_world();
    Ok((component.display().to_string(), Some(world)))
}

/// Splits `NAME=VALUE`.
fn pair(text: &str, flag: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => bail!("{flag} `{text}`: write NAME=VALUE"),
    }
}

/// Turns the flags into grants; every relative host path is taken from the current directory.
fn grants(args: &RunArgs, cwd: &Path) -> anyhow::Result<Grants> {
    let mut grants = Grants::none();
    for spec in &args.grant_dirs {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, guest, access) = match parts.as_slice() {
            [host, guest] => (*host, *guest, Access::ReadOnly),
            [host, guest, "ro"] => (*host, *guest, Access::ReadOnly),
            [host, guest, "rw"] => (*host, *guest, Access::ReadWrite),
            _ => bail!("--grant-dir `{spec}`: write HOST:GUEST, HOST:GUEST:ro or HOST:GUEST:rw"),
        };
        let host = grants::absolute(cwd, Path::new(host));
        if access == Access::ReadWrite && !host.exists() {
            std::fs::create_dir_all(&host).with_context(|| {
                format!("--grant-dir `{spec}`: cannot create {}", host.display())
            })?;
        }
        if !host.is_dir() {
            bail!(
                "--grant-dir `{spec}`: {} is not a directory",
                host.display()
            );
        }
        grants = grants.dir(host, guest, access)?;
    }
    for spec in &args.grant_env {
        let (name, value) = match spec.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => {
                let value = std::env::var(spec).with_context(|| {
                    format!(
                        "--grant-env {spec}: the variable is not set here (or write NAME=VALUE)"
                    )
                })?;
                (spec.clone(), value)
            }
        };
        grants = grants.env(name, value);
    }
    for host in &args.grant_hosts {
        grants = grants.host(host.clone())?;
    }
    Ok(grants)
}

pub(super) fn run_plugin(args: RunArgs) -> anyhow::Result<Exit> {
    let cwd = cwd()?;
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", path.display()))?;
            serde_json::to_string(&table)?
        }
        None => "{}".to_owned(),
    };
    let mut grants = grants(&args, &cwd)?;
    // The data directory holds the compiled-plugin cache and its key: never granted.
    let fence = sluice::pipeline::Fence::new(&cwd.join(&args.data_dir), None);
    for dir in &grants.dirs {
        fence
            .check(&dir.host.display().to_string())
            .map_err(anyhow::Error::msg)
            .context("--grant-dir")?;
    }
    let limits = sluice::types::Limits {
        memory: limits::parse_bytes(&args.memory)
            .map_err(anyhow::Error::msg)
            .context("--memory")?,
        timeout: limits::parse_duration(&args.timeout)
            .map_err(anyhow::Error::msg)
            .context("--timeout")?,
        log: limits::parse_bytes(&args.log_limit)
            .map_err(anyhow::Error::msg)
            .context("--log-limit")?,
        output: limits::parse_bytes(&args.output_limit)
            .map_err(anyhow::Error::msg)
            .context("--output-limit")?,
    };
    let max_stack = limits::parse_bytes(&args.stack)
        .map_err(anyhow::Error::msg)
        .context("--stack")?;
    let mut variables = Vec::new();
    let mut mask = Vec::new();
    for (spec, secret) in args
        .vars
        .iter()
        .map(|v| (v, false))
        .chain(args.secrets.iter().map(|v| (v, true)))
    {
        let (name, value) = pair(spec, if secret { "--secret" } else { "--var" })?;
        if secret {
            mask.push(value.clone());
        }
        variables.push(Variable {
            name,
            value,
            secret,
            sealed: None,
        });
    }
    let workspace = grants
        .dirs
        .iter()
        .find(|d| d.guest == "/workspace")
        .map(|d| d.guest.clone());

    let host = PluginHost::new(HostConfig {
        max_stack: usize::try_from(max_stack)?,
        ..HostConfig::in_data_dir(&args.data_dir)
    })?;
    let (reference, project_world) = plugin_or_project(args.plugin.as_deref(), &cwd)?;
    let shown = super::spinner::describe(&reference, &cwd);
    let reference = self::reference(&reference, &cwd, &host)?;
    let plugin = super::spinner::while_compiling(&shown, || host.load(&reference))?;
    let world = match args.world {
        Some(WorldArg::Task) => World::Task,
        Some(WorldArg::Gate) => World::Gate,
        Some(WorldArg::ArtifactSource) => World::ArtifactSource,
        None => project_world.unwrap_or(plugin.worlds()[0]),
    };
    if !plugin.implements(world) {
        let has: Vec<String> = plugin.worlds().iter().map(ToString::to_string).collect();
        bail!(
            "{} does not export the {world} world (it exports: {})",
            plugin.origin(),
            has.join(", ")
        );
    }
    if let Some(into) = &args.into {
        std::fs::create_dir_all(into)
            .with_context(|| format!("cannot create {}", into.display()))?;
        let into = grants::absolute(&cwd, into);
        grants = grants.dir(into, "/artifact", Access::ReadWrite)?;
    }

    let sandbox = Sandbox {
        grants,
        limits,
        mask,
        sink: Some(Arc::new(print_event)),
    };
    let input = TaskInput {
        config: config.clone(),
        context: Context {
            pipeline: "local".into(),
            release: "local-1".into(),
            release_number: 1,
            stage: "local".into(),
            attempt: 1,
            artifacts: Vec::new(),
            workspace,
        },
        variables,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let (outcome, elapsed) = runtime.block_on(async {
        match (world, &args.fetch) {
            (World::Task, _) => {
                let run = host.run_task(&plugin, sandbox, &input).await;
                (
                    run.result.map(|report| {
                        let mut lines = Vec::new();
                        for warning in &report.warnings {
                            lines.push(format!("warning: {}", Escaped(warning)));
                        }
                        for output in &report.outputs {
                            let value = if output.secret { "***" } else { &output.value };
                            lines.push(format!(
                                "output {} = {}",
                                Escaped(&output.name),
                                Escaped(value)
                            ));
                        }
                        let verdict = if report.warnings.is_empty() {
                            "succeeded"
                        } else {
                            "succeeded with issues"
                        };
                        (verdict.to_owned(), lines, true)
                    }),
                    run.elapsed,
                )
            }
            (World::Gate, _) => {
                let run = host.evaluate_gate(&plugin, sandbox, &input).await;
                (
                    run.result.map(|health| match health {
                        sluice::types::Health::Healthy => ("healthy".to_owned(), vec![], true),
                        sluice::types::Health::Unhealthy(why) => {
                            (format!("unhealthy: {}", Escaped(&why)), vec![], false)
                        }
                    }),
                    run.elapsed,
                )
            }
            (World::ArtifactSource, None) => {
                let run = host.list_versions(&plugin, sandbox, &config).await;
                (
                    run.result.map(|versions| {
                        let lines = versions.iter().map(describe_version).collect();
                        (format!("{} versions", versions.len()), lines, true)
                    }),
                    run.elapsed,
                )
            }
            (World::ArtifactSource, Some(version)) => {
                let run = host
                    .fetch(&plugin, sandbox, &config, version, "/artifact")
                    .await;
                (
                    run.result.map(|v| {
                        (
                            format!("fetched {}", Escaped(&v.id)),
                            vec![describe_version(&v)],
                            true,
                        )
                    }),
                    run.elapsed,
                )
            }
        }
    });
    match outcome {
        Ok((verdict, lines, ok)) => {
            for line in lines {
                println!("{line}");
            }
            println!("{verdict} in {elapsed:.2?}");
            Ok(if ok { Exit::Success } else { Exit::Failed })
        }
        Err(failure) => {
            println!("{} in {elapsed:.2?}", describe_failure(&failure));
            Ok(Exit::Failed)
        }
    }
}

fn describe_version(v: &sluice::types::Version) -> String {
    let mut text = Escaped(&v.id).to_string();
    if let Some(branch) = &v.branch {
        text.push_str(&format!(" branch={}", Escaped(branch)));
    }
    if let Some(commit) = &v.commit {
        text.push_str(&format!(" commit={}", Escaped(commit)));
    }
    if !v.tags.is_empty() {
        text.push_str(&format!(" tags={}", Escaped(&v.tags.join(","))));
    }
    text
}

fn describe_failure(failure: &Failure) -> String {
    format!("failed: {}", Escaped(&failure.to_string()))
}

fn print_event(event: &LogEvent) {
    let mut out = std::io::stdout().lock();
    let _ = match event {
        LogEvent::Line(line) => writeln!(out, "{line}"),
        LogEvent::Progress { percent, message } => {
            writeln!(out, "[{percent:>3}%] {}", Escaped(message))
        }
    };
}
