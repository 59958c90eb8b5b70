//! The compiled-plugin cache cannot be poisoned. A compiled file is trusted only if its tag
//! (HMAC-SHA256, keyed outside any grant) verifies for the plugin it is cached under: a
//! genuine compilation of another plugin planted under `copy`'s name, Winch's compilation of
//! `copy` under Cranelift's name, a file from before tags and a hand-made file are discarded, and the genuine plugin is compiled and run. And no
//! task can reach the cache: a grant overlapping the data directory is refused, whether the
//! pipeline writes it (`sluice run` keeps its data in `.sluice/` beside the pipeline) or a
//! task's output builds it at run time.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sluice::plugin::{Compiler, Digest, HostConfig, PluginHost, PluginRef, Tiering};
use sluice::types::{Access, Grants};

use crate::support::{TESTKIT, input, tight};

/// The cache's file of `compiler`'s compilation of `digest`.
fn cached(dir: &Path, digest: Digest, compiler: Compiler) -> PathBuf {
    let prefix = format!("{}-{}-", digest.hex(), compiler.name());
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".cwasm")
        })
        .unwrap_or_else(|| panic!("no {compiler:?} compilation of {digest}"))
}

/// Runs `copy` from a fresh host on `cache` and checks it copied: the genuine plugin ran
/// (the testkit, given copy's configuration, would fail on it).
async fn copy_runs(cache: &Path) {
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(cache.to_owned()),
        ..HostConfig::default()
    })
    .unwrap();
    let copy = host.load(&PluginRef::Builtin("copy".into())).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("index.html"), "genuine").unwrap();
    let grants = Grants::none()
        .dir(&src, "/src", Access::ReadOnly)
        .unwrap()
        .dir(&dst, "/dst", Access::ReadWrite)
        .unwrap();
    let sandbox = sluice::plugin::Sandbox { grants, ..tight() };
    let run = host
        .run_task(
            &copy,
            sandbox,
            &input(json!({"from": "/src", "to": "/dst"})),
        )
        .await;
    run.result.unwrap_or_else(|f| panic!("copy failed: {f}"));
    assert_eq!(
        std::fs::read_to_string(dst.join("index.html")).unwrap(),
        "genuine"
    );
}

#[tokio::test]
async fn a_compilation_planted_under_another_plugins_name_is_discarded_and_recompiled() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("compiled");
    let first = PluginHost::new(HostConfig {
        cache_dir: Some(cache.clone()),
        ..HostConfig::default()
    })
    .unwrap();
    let kit = first.load(&PluginRef::File(TESTKIT.into())).unwrap();
    let copy = first.load(&PluginRef::Builtin("copy".into())).unwrap();
    let copy_file = cached(&cache, copy.digest(), Compiler::Cranelift);
    let genuine_copy = std::fs::read(&copy_file).unwrap();
    let kit_compiled = std::fs::read(cached(&cache, kit.digest(), Compiler::Cranelift)).unwrap();
    // Winch's compilation of copy, tagged with the same key (a cache holding Cranelift's would
    // load that instead of compiling with Winch).
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::copy(cache.join("key"), scratch.join("key")).unwrap();
    let winch = PluginHost::new(HostConfig {
        cache_dir: Some(scratch.clone()),
        tiering: Tiering {
            quick_from: 0,
            tier_up: false,
        },
        ..HostConfig::default()
    })
    .unwrap();
    winch.load(&PluginRef::Builtin("copy".into())).unwrap();
    let winch_compiled = std::fs::read(cached(&scratch, copy.digest(), Compiler::Winch)).unwrap();

    let untagged = genuine_copy[32..].to_vec();
    let mut hand_made = b"\x7fELF".to_vec();
    hand_made.resize(4096, 0x90);
    for (attack, forged) in [
        (
            "the testkit's genuine compilation under copy's name",
            kit_compiled,
        ),
        (
            "copy's compilation without its tag (as before tags)",
            untagged,
        ),
        (
            "Winch's genuine compilation of copy under Cranelift's name",
            winch_compiled,
        ),
        ("a hand-made file", hand_made),
    ] {
        std::fs::write(&copy_file, &forged).unwrap();
        copy_runs(&cache).await;
        let now = std::fs::read(&copy_file).unwrap();
        assert_ne!(now, forged, "{attack}: the forged file is gone");
        assert_eq!(
            now.len(),
            genuine_copy.len(),
            "{attack}: recompiled and cached again"
        );
    }
    // The genuine file, untouched, is used as it is.
    copy_runs(&cache).await;
}

/// The key is owner-only, in the cache directory, which is owner-only.
#[cfg(unix)]
#[test]
fn the_cache_and_its_key_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("compiled");
    PluginHost::new(HostConfig {
        cache_dir: Some(cache.clone()),
        ..HostConfig::default()
    })
    .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&cache.join("key")), 0o600);
}

/// A project as `sluice run` sees it: the pipeline, the testkit under `plugins/`, and the data
/// directory `.sluice/` beside them once run.
fn project(pipeline: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::copy(TESTKIT, dir.path().join("plugins/kit.wasm")).unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), pipeline).unwrap();
    dir
}

fn sluice_run(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "pipeline.toml", "--approve", "all"])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Every file under `dir`, relative, with its content.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let content = std::fs::read(&path).unwrap();
                out.push((path.strip_prefix(dir).unwrap().to_owned(), content));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_pipeline_granting_the_data_directory_is_refused_before_anything_runs() {
    let dir = project(
        r#"version = 1
name = "poison"
[[stages]]
name = "dev"
[[stages.tasks]]
name = "forge"
plugin = "./plugins/kit.wasm"
config = { action = "write", path = "/project/.sluice/compiled/forged.cwasm", content = "x" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)", guest = "/project", access = "rw" }]
"#,
    );
    let out = sluice_run(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("overlaps the data directory"), "{stderr}");
    assert!(stderr.contains("task `forge` (stage `dev`)"), "{stderr}");
    assert!(
        !dir.path().join(".sluice/compiled/forged.cwasm").exists(),
        "the task never ran"
    );
    let releases = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["releases"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&releases.stdout);
    assert!(
        !listed.contains("poison-1"),
        "no release was created: {listed}"
    );
}

#[test]
fn a_grant_built_from_a_task_output_cannot_reach_the_data_directory() {
    let dir = project(
        r#"version = 1
name = "poison"
[[stages]]
name = "dev"
[[stages.tasks]]
name = "find"
plugin = "./plugins/kit.wasm"
config = { action = "read", path = "/input/where.txt" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)/input", guest = "/input" }]
[[stages.tasks]]
name = "forge"
plugin = "./plugins/kit.wasm"
config = { action = "write", path = "/cache/forged.cwasm", content = "x" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)/out/$(find.content)", guest = "/cache", access = "rw" }]
"#,
    );
    let data = dir.path().join(".sluice");
    std::fs::create_dir_all(dir.path().join("input")).unwrap();
    std::fs::write(dir.path().join("input/where.txt"), "../.sluice/compiled").unwrap();
    let out = sluice_run(dir.path());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("overlaps the data directory"), "{all}");
    let cache_files: Vec<_> = files(&data.join("compiled"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(
        !cache_files.iter().any(|p| p.ends_with("forged.cwasm")),
        "nothing was written in the cache: {cache_files:?}"
    );
}

/// The compilations in `dir`, by plugin digest.
fn compilations(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cwasm"))
        .map(|n| n[..64].to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn past_its_cap_the_cache_drops_the_least_recently_used_compilation() {
    let cache = tempfile::tempdir().unwrap();
    let load = |name: &str, cap: u64| {
        let host = PluginHost::new(HostConfig {
            cache_dir: Some(cache.path().to_owned()),
            cache_max_bytes: cap,
            ..HostConfig::default()
        })
        .unwrap();
        host.load(&PluginRef::Builtin(name.into()))
            .unwrap()
            .digest()
    };
    let unbounded = u64::MAX;
    let (copy, source) = (load("copy", unbounded), load("dir-source", unbounded));
    let size = |d: Digest| {
        std::fs::metadata(cached(cache.path(), d, Compiler::Cranelift))
            .unwrap()
            .len()
    };
    // `copy` used again: now `dir-source` is the least recently used.
    assert_eq!(load("copy", unbounded), copy);
    let check = load("http-check", unbounded);
    let cap = size(copy) + size(check) + size(check) / 2;
    assert!(
        size(source) > size(check) / 2,
        "the cap leaves room for two, not three"
    );
    // The next store evicts: `http-check` is stored again (a fresh host with a smaller cap
    // reads it from the cache, so store it anew by removing it first).
    std::fs::remove_file(cached(cache.path(), check, Compiler::Cranelift)).unwrap();
    assert_eq!(load("http-check", cap), check);
    let mut want = vec![copy.hex(), check.hex()];
    want.sort();
    assert_eq!(
        compilations(cache.path()),
        want,
        "dir-source, the least recently used, went"
    );
}
