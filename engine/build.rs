//! Compiles the plugins in `plugins/` (and the template in `examples/`) to `wasm32-wasip2`
//! components, once, so that `cargo build` and `cargo test` need no extra step.
//!
//! The pattern of wasmtime's `crates/test-programs/artifacts/build.rs`: one nested
//! `cargo build --target wasm32-wasip2` into a target directory of its own (shared by every
//! profile of the outer build, so a debug and a release build reuse the same components), then
//! copies into `OUT_DIR` and one `SLUICE_PLUGIN_<NAME>` environment variable per component for
//! `include_bytes!` (built-ins) and for the tests.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// (package, name the engine and tests know it by)
const PLUGINS: &[(&str, &str)] = &[
    ("sluice-plugin-copy", "copy"),
    ("sluice-plugin-dir-source", "dir-source"),
    ("sluice-plugin-http-check", "http-check"),
    ("sluice-plugin-http-request", "http-request"),
    ("sluice-plugin-http-source", "http-source"),
    ("sluice-plugin-oci-source", "oci-source"),
    ("sluice-plugin-template", "template"),
    ("sluice-plugin-testkit", "testkit"),
    ("sluice-template-plugin", "example-template"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    for watched in [
        "wit",
        "plugin-sdk",
        "plugins",
        "examples/template-plugin",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    ensure_target_installed();
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        // Small components: no debug info, but keep function names for trap backtraces.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        // The outer build's flags and wrappers (clippy, coverage) are for the host, not wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_LLVM_COV");
    for (package, _) in PLUGINS {
        cmd.args(["--package", package]);
    }
    let status = cmd
        .status()
        .expect("failed to run cargo to build the plugins");
    assert!(
        status.success(),
        "building the plugins for {TARGET} failed (see above)"
    );

    let built = target_dir.join(TARGET).join("release");
    for (package, name) in PLUGINS {
        let file = format!("{}.wasm", package.replace('-', "_"));
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::copy(built.join(&file), &dest)
            .unwrap_or_else(|e| panic!("copying {file} into OUT_DIR failed: {e}"));
        let var = name.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env=SLUICE_PLUGIN_{var}={}", dest.display());
    }
}

/// `rust-toolchain.toml` names the target so that rustup installs it with the toolchain; a
/// toolchain installed earlier without it gets it added here, so a fresh clone builds as is.
fn ensure_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let installed = sysroot
        .as_deref()
        .is_some_and(|s| Path::new(s).join("lib/rustlib").join(TARGET).exists());
    if installed {
        return;
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        rustup.args(["--toolchain", &toolchain]);
    }
    match rustup.status() {
        Ok(status) if status.success() => {}
        _ => panic!(
            "the Rust target {TARGET} is not installed and `rustup target add {TARGET}` failed: \
             install it, then build again"
        ),
    }
}
