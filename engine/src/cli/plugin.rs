//! `sluice plugin ...`: the plugin author's local loop.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use sluice::builtin::{BUILTINS, builtin};
use sluice::plugin::{Compiler, HostConfig, PluginHost, PluginRef, Sandbox, Tiering, World};
use sluice::types::{
    Access, Context, Escaped, Failure, Grants, LogEvent, TaskInput, Variable, grants, limits,
};

use super::Exit;
use super::scaffold::{Kind, Lang, Manifest};

#[derive(Debug, Subcommand)]
pub(super) enum PluginCommand {
    /// List the plugins built into this binary, with their digests.
    List,
    /// Write a built-in plugin's component to a file.
    Export {
        /// Built-in plugin name (see `sluice plugin list`).
        name: String,
        /// Where to write the component.
        #[arg(short, long, value_name = "FILE.wasm")]
        output: PathBuf,
    },
    /// Show a component's worlds, exports, imports, digest and size (its compilation comes
    /// from the cache in the data directory, and goes there).
    Inspect {
        /// A component file, or a built-in plugin name.
        plugin: String,
        /// Where compiled components are cached.
        #[arg(long = "data-dir", default_value = ".sluice", env = "SLUICE_DATA_DIR", value_parser = super::args::absolute_dir)]
        data_dir: PathBuf,
    },
    /// Compile a component into the cache of the data directory, so its first run is fast.
    Compile {
        /// A component file.
        plugin: String,
        /// Where compiled components are cached.
        #[arg(long = "data-dir", default_value = ".sluice", env = "SLUICE_DATA_DIR", value_parser = super::args::absolute_dir)]
        data_dir: PathBuf,
    },
    /// Publish a component to an OCI registry (the CNCF Wasm layout) and print its digest,
    /// for pipelines to name as `oci://HOST/REPO@sha256:…`. Credentials come from
    /// SLUICE_REGISTRY_USERNAME and SLUICE_REGISTRY_PASSWORD.
    Push {
        /// A component file, or a built-in plugin name.
        plugin: String,
        /// Where to: `oci://HOST[:PORT]/REPO:TAG`.
        reference: String,
    },
    /// Write a new plugin project: source, test, sample config, README, WIT and helpers.
    New {
        /// The project's directory; its last component is the plugin's name (e.g. `notify-chat`).
        dir: PathBuf,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: Lang,
        /// What it is.
        #[arg(long, value_enum, default_value = "task")]
        kind: Kind,
    },
    /// Build the plugin project in DIR (default: here) into build/NAME.wasm.
    Build {
        /// The project's directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a plugin once, locally, in the same sandbox a pipeline would give it.
    Run(Box<RunArgs>),
}

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

pub(super) fn run(command: PluginCommand) -> anyhow::Result<Exit> {
    match command {
        PluginCommand::List => {
            println!("{:<12} {:<73} SUMMARY", "NAME", "DIGEST");
            for b in BUILTINS {
                let digest = sluice::plugin::Digest::of(b.bytes);
                println!("{:<12} {:<73} {}", b.name, digest.to_string(), b.summary);
            }
            Ok(Exit::Success)
        }
        PluginCommand::Export { name, output } => {
            let plugin = builtin(&name).with_context(|| {
                format!("there is no built-in plugin named `{name}` (see `sluice plugin list`)")
            })?;
            std::fs::write(&output, plugin.bytes)
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!("wrote {} ({} bytes)", output.display(), plugin.bytes.len());
            Ok(Exit::Success)
        }
        PluginCommand::Inspect { plugin, data_dir } => {
            let host = PluginHost::new(HostConfig::in_data_dir(&data_dir))?;
            let cwd = cwd()?;
            let shown = super::spinner::describe(&plugin, &cwd);
            let reference = reference(&plugin, &cwd, &host)?;
            let plugin = super::spinner::while_compiling(&shown, || host.load(&reference))?;
            let worlds: Vec<String> = plugin.worlds().iter().map(ToString::to_string).collect();
            println!("plugin:   {}", plugin.origin());
            println!("digest:   {}", plugin.digest());
            println!("size:     {} bytes", plugin.size());
            println!("worlds:   {}", worlds.join(", "));
            println!("compiler: {}", compiler_note(plugin.compiler()));
            let exports: Vec<String> = plugin.exports().iter().map(|e| labelled(e)).collect();
            println!("exports:  {}", exports.join("\n          "));
            println!("imports:  {}", plugin.imports().join("\n          "));
            Ok(Exit::Success)
        }
        PluginCommand::Compile { plugin, data_dir } => {
            // Cranelift's code, whatever the size: what `compile` is for.
            let host = PluginHost::new(HostConfig {
                tiering: Tiering::OPTIMIZED,
                ..HostConfig::in_data_dir(&data_dir)
            })?;
            let started = std::time::Instant::now();
            let cwd = cwd()?;
            let shown = super::spinner::describe(&plugin, &cwd);
            let reference = reference(&plugin, &cwd, &host)?;
            let plugin = super::spinner::while_compiling(&shown, || host.load(&reference))?;
            println!(
                "compiled {} ({}) in {:.2?}; cached in {}",
                plugin.origin(),
                plugin.digest(),
                started.elapsed(),
                data_dir.join("compiled").display()
            );
            Ok(Exit::Success)
        }
        PluginCommand::New { dir, lang, kind } => {
            let dir = std::path::absolute(&dir)
                .with_context(|| format!("`{}` is not a usable path", dir.display()))?;
            let files = super::scaffold::create(&dir, lang, kind)?;
            println!(
                "wrote a {lang} {kind} plugin in {} ({} files)",
                dir.display(),
                files.len()
            );
            let install = match lang {
                Lang::Rust => "",
                Lang::Python => {
                    "python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && "
                }
                Lang::Js => "npm install && ",
            };
            println!(
                "next: cd {} && {install}sluice plugin build (README.md says more)",
                dir.display()
            );
            Ok(Exit::Success)
        }
        PluginCommand::Build { dir } => {
            let dir = std::path::absolute(&dir)
                .with_context(|| format!("`{}` is not a usable path", dir.display()))?;
            super::plugin_build::build(&dir)?;
            Ok(Exit::Success)
        }
        PluginCommand::Push { plugin, reference } => {
            super::plugin_push::push(&plugin, &reference, &cwd()?)
        }
        PluginCommand::Run(args) => run_plugin(*args),
    }
}

/// `plugin` as the plugin commands take it: a built-in, a file, or an `oci://` reference,
/// pinned and pulled into the data directory's plugin store first (from any registry).
fn reference(plugin: &str, cwd: &Path, host: &PluginHost) -> anyhow::Result<PluginRef> {
    if !plugin.starts_with(sluice::registry::SCHEME) {
        return Ok(PluginRef::parse(plugin, cwd));
    }
    let registries = sluice::registry::Registries::any_from_env();
    let pinned = sluice::registry::pull(plugin, host, &registries)
        .map_err(|e| anyhow::anyhow!("plugin `{plugin}`: {e}"))?;
    Ok(PluginRef::Oci(pinned))
}

/// An export as `inspect` shows it: what Sluice does not call says so.
fn labelled(export: &str) -> String {
    if export.starts_with("sluice:plugin/") {
        export.to_owned()
    } else if export == "exports" {
        format!("{export}  (componentize-py's own, for its runtime; Sluice never calls it)")
    } else {
        format!("{export}  (not a Sluice interface; never called)")
    }
}

/// The compiler `inspect` names, and what it means for a run.
fn compiler_note(compiler: Compiler) -> &'static str {
    match compiler {
        Compiler::Cranelift => "cranelift (optimised)",
        Compiler::Winch => {
            "winch (baseline, for a fast first run; `sluice plugin compile` makes optimised code, \
             and `sluice serve` makes it in the background)"
        }
    }
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

fn cwd() -> anyhow::Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
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

fn run_plugin(args: RunArgs) -> anyhow::Result<Exit> {
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
