//! `sluice plugin ...`: the plugin author's local loop.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use sluice::builtin::{BUILTINS, builtin};
use sluice::plugin::{Compiler, HostConfig, PluginHost, PluginRef, Tiering};

use super::Exit;
use super::scaffold::{Kind, Lang};

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
    Run(Box<super::plugin_run::RunArgs>),
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
        PluginCommand::Run(args) => super::plugin_run::run_plugin(*args),
    }
}

/// `plugin` as the plugin commands take it: a built-in, a file, or an `oci://` reference,
/// pinned and pulled into the data directory's plugin store first (from any registry).
pub(super) fn reference(plugin: &str, cwd: &Path, host: &PluginHost) -> anyhow::Result<PluginRef> {
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

pub(super) fn cwd() -> anyhow::Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}
