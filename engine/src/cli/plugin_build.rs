//! `sluice plugin build [DIR]`: runs a plugin project's own toolchain (cargo for
//! `wasm32-wasip2`, componentize-py, componentize-js) and checks that what it made exports the
//! world the project says. A missing tool is named with the exact command that installs the
//! pinned version; a different version is built with, and warned about.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use sluice::plugin::{HostConfig, PluginHost, PluginRef};

use super::scaffold::{COMPONENTIZE_JS, COMPONENTIZE_PY, Kind, Lang, Manifest};

/// Builds the project in `dir`; returns the component's path.
pub(super) fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = Manifest::read(dir)?;
    let out = dir.join(manifest.component());
    std::fs::create_dir_all(out.parent().expect("build/NAME.wasm has a parent"))
        .with_context(|| format!("cannot create {}", dir.join("build").display()))?;
    let world = manifest.kind.world();
    eprintln!(
        "building {} ({} {})",
        manifest.name, manifest.lang, manifest.kind
    );
    match manifest.lang {
        Lang::Rust => {
            let cargo = tool(dir, "cargo", &[]).with_context(|| {
                "cargo is not installed: install Rust (https://rustup.rs), then \
                 `rustup target add wasm32-wasip2`"
            })?;
            require_wasip2_target(dir)?;
            let mut cmd = Command::new(cargo);
            cmd.current_dir(dir)
                .args(["build", "--release", "--target", "wasm32-wasip2"]);
            run(cmd, "cargo build")?;
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(|d| super::args::absolute_dir(&d.to_string_lossy()))
                .transpose()
                .map_err(anyhow::Error::msg)?
                .unwrap_or_else(|| dir.join("target"));
            let built = target_dir
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", manifest.name.replace('-', "_")));
            std::fs::copy(&built, &out).with_context(|| {
                format!("cargo built no component at {} to copy", built.display())
            })?;
        }
        Lang::Python => {
            let tool = tool(dir, "componentize-py", &[".venv/bin"]).with_context(|| {
                format!(
                    "componentize-py is not installed: `python3 -m venv .venv && .venv/bin/pip \
                     install componentize-py=={COMPONENTIZE_PY}` in {} (requirements-dev.txt \
                     pins it), or put it on PATH",
                    dir.display()
                )
            })?;
            check_version(&tool, "componentize-py", COMPONENTIZE_PY);
            let mut cmd = Command::new(tool);
            cmd.current_dir(dir)
                .args(["-d", "wit", "-w", world, "componentize", "app", "-p", "."])
                .arg("-o")
                .arg(manifest.component());
            run(cmd, "componentize-py")?;
        }
        Lang::Js => {
            let tool = tool(dir, "componentize-js", &["node_modules/.bin"]).with_context(|| {
                format!(
                    "componentize-js is not installed: `npm install` in {} (package.json pins \
                     @bytecodealliance/componentize-js {COMPONENTIZE_JS}; Node.js 20 or later)",
                    dir.display()
                )
            })?;
            check_version(&tool, "componentize-js", COMPONENTIZE_JS);
            let mut cmd = Command::new(tool);
            cmd.current_dir(dir)
                .args(["component.js", "--wit", "wit", "-n", world, "-o"])
                .arg(manifest.component());
            run(cmd, "componentize-js")?;
        }
    }
    check_exports(&out, manifest.kind)?;
    Ok(out)
}

/// `name` in one of `dir`'s own tool folders, else on `PATH`.
fn tool(dir: &Path, name: &str, local: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    local
        .iter()
        .map(|folder| dir.join(folder))
        .chain(std::env::split_paths(&path))
        .map(|folder| folder.join(name))
        .find(|candidate| candidate.is_file())
}

fn require_wasip2_target(dir: &Path) -> anyhow::Result<()> {
    let Some(rustc) = tool(dir, "rustc", &[]) else {
        return Ok(()); // cargo says what is wrong
    };
    let sysroot = Command::new(rustc)
        .current_dir(dir)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot
        && !sysroot.join("lib/rustlib/wasm32-wasip2").is_dir()
    {
        bail!(
            "the Rust target wasm32-wasip2 is not installed for {}: `rustup target add \
             wasm32-wasip2`",
            sysroot.display()
        );
    }
    Ok(())
}

/// Warns when `tool --version` does not print the pinned version.
fn check_version(tool: &Path, name: &str, pinned: &str) {
    let printed = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if !printed.split_whitespace().any(|word| word == pinned) {
        eprintln!(
            "warning: {name} {pinned} is the version Sluice is tested with; {} printed `{printed}`",
            tool.display()
        );
    }
}

fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}): see its output above");
    }
    Ok(())
}

/// Checks that the component at `path` exports the world of `kind`, compiling nothing.
fn check_exports(path: &Path, kind: Kind) -> anyhow::Result<()> {
    let host = PluginHost::new(HostConfig::default())?;
    let worlds = host.outline(&PluginRef::File(path.to_owned()))?;
    let wanted = kind.plugin_world();
    if !worlds.contains(&wanted) {
        let has: Vec<String> = worlds.iter().map(ToString::to_string).collect();
        bail!(
            "{} exports {} but not the {wanted} world the project is for",
            path.display(),
            if has.is_empty() {
                "nothing Sluice calls".to_owned()
            } else {
                has.join(", ")
            }
        );
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    println!("built {} ({size} bytes, exports {wanted})", path.display());
    Ok(())
}
