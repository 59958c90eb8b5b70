//! The reference plugins (copy, dir-source, http-check), the template, loading and caching.

use std::path::Path;

use serde_json::json;
use sluice::plugin::{FileError, HostConfig, LoadError, PluginHost, PluginRef, Sandbox, World};
use sluice::types::{Access, Failure, Grants, Health, PluginError};

use crate::support::{TEMPLATE, TESTKIT, TestServer, host, input, load, output, tight};

fn dirs(grants: &[(&Path, &str, Access)]) -> Sandbox {
    let mut g = Grants::none();
    for (host, guest, access) in grants {
        g = g.dir(*host, *guest, *access).unwrap();
    }
    Sandbox {
        grants: g,
        ..tight()
    }
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

#[tokio::test]
async fn copy_filters_reports_changes_and_mirrors() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    write(&src.join("index.html"), "v1");
    write(&src.join("css/site.css"), "body{}");
    write(&src.join("drafts/wip.html"), "wip");
    std::fs::create_dir(&dst).unwrap();
    let copy = load("copy");
    let sandbox = || {
        dirs(&[
            (&src, "/src", Access::ReadOnly),
            (&dst, "/dst", Access::ReadWrite),
        ])
    };
    let config = |mirror: bool| {
        input(json!({"from": "/src", "to": "/dst", "exclude": ["drafts/**"], "mirror": mirror}))
    };

    let first = host()
        .run_task(&copy, sandbox(), &config(false))
        .await
        .result
        .unwrap();
    assert_eq!(output(&first, "files-added"), Some("2"));
    assert_eq!(
        std::fs::read_to_string(dst.join("index.html")).unwrap(),
        "v1"
    );
    assert_eq!(
        std::fs::read_to_string(dst.join("css/site.css")).unwrap(),
        "body{}"
    );
    assert!(
        !dst.join("drafts").exists(),
        "excluded files are not copied"
    );

    write(&src.join("index.html"), "v2");
    std::fs::remove_file(src.join("css/site.css")).unwrap();
    let second = host()
        .run_task(&copy, sandbox(), &config(true))
        .await
        .result
        .unwrap();
    assert_eq!(output(&second, "files-updated"), Some("1"));
    assert_eq!(output(&second, "files-removed"), Some("1"));
    assert_eq!(
        std::fs::read_to_string(dst.join("index.html")).unwrap(),
        "v2"
    );
    assert!(!dst.join("css/site.css").exists());

    let third = host()
        .run_task(&copy, sandbox(), &config(true))
        .await
        .result
        .unwrap();
    assert_eq!(
        output(&third, "summary"),
        Some("0 added, 0 updated, 1 unchanged, 0 removed")
    );
    let leftovers: Vec<_> = walk(&dst)
        .into_iter()
        .filter(|p| p.contains("sluice-tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files remain: {leftovers:?}"
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn copy_rejects_bad_configuration_and_cannot_write_without_a_grant() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("src/a.txt"), "a");
    let copy = load("copy");
    let run = host()
        .run_task(
            &copy,
            tight(),
            &input(json!({"from": "/src", "too": "/dst"})),
        )
        .await;
    match run.result.unwrap_err() {
        Failure::Plugin(PluginError::InvalidConfig(m)) => {
            assert!(m.contains("unknown field `too`"), "{m}")
        }
        other => panic!("expected invalid configuration, got {other}"),
    }
    let sandbox = dirs(&[(&tmp.path().join("src"), "/src", Access::ReadOnly)]);
    let run = host()
        .run_task(
            &copy,
            sandbox,
            &input(json!({"from": "/src", "to": "/src/out"})),
        )
        .await;
    assert!(matches!(
        run.result,
        Err(Failure::Plugin(PluginError::Failed(_)))
    ));
    assert!(!tmp.path().join("src/out").exists());
}

#[tokio::test]
async fn copy_resolves_relative_sources_against_the_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let (ws, dst) = (tmp.path().join("ws"), tmp.path().join("dst"));
    write(&ws.join("site/index.html"), "hello");
    std::fs::create_dir(&dst).unwrap();
    let mut task = input(json!({"from": "site", "to": "/dst"}));
    task.context.workspace = Some("/workspace".into());
    let sandbox = dirs(&[
        (&ws, "/workspace", Access::ReadOnly),
        (&dst, "/dst", Access::ReadWrite),
    ]);
    host()
        .run_task(&load("copy"), sandbox, &task)
        .await
        .result
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dst.join("index.html")).unwrap(),
        "hello"
    );
}

#[tokio::test]
async fn dir_source_lists_newest_first_and_fetches() {
    let tmp = tempfile::tempdir().unwrap();
    let builds = tmp.path().join("builds");
    for v in ["1.9.0", "1.10.0", "1.2.0"] {
        write(&builds.join(v).join("index.html"), &format!("site {v}"));
    }
    write(
        &builds.join("1.10.0/.artifact.json"),
        r#"{"branch": "main", "commit": "abc123", "tags": ["stable"]}"#,
    );
    write(&builds.join("notes.txt"), "not a version");
    let source = load("dir-source");
    assert_eq!(source.worlds(), [World::ArtifactSource]);
    let config = json!({"path": "/builds"}).to_string();

    let sandbox = dirs(&[(&builds, "/builds", Access::ReadOnly)]);
    let versions = host()
        .list_versions(&source, sandbox, &config)
        .await
        .result
        .unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["1.10.0", "1.9.0", "1.2.0"]);
    assert_eq!(versions[0].branch.as_deref(), Some("main"));
    assert_eq!(versions[0].commit.as_deref(), Some("abc123"));
    assert_eq!(versions[0].tags, ["stable"]);
    assert!(versions[1].created.is_some());

    let into = tmp.path().join("fetched");
    std::fs::create_dir(&into).unwrap();
    let sandbox = dirs(&[
        (&builds, "/builds", Access::ReadOnly),
        (&into, "/artifact", Access::ReadWrite),
    ]);
    let fetched = host()
        .fetch(&source, sandbox.clone(), &config, "1.10.0", "/artifact")
        .await
        .result
        .unwrap();
    assert_eq!(fetched.commit.as_deref(), Some("abc123"));
    assert_eq!(
        std::fs::read_to_string(into.join("index.html")).unwrap(),
        "site 1.10.0"
    );
    assert!(!into.join(".artifact.json").exists());

    let missing = host()
        .fetch(&source, sandbox, &config, "9.9.9", "/artifact")
        .await;
    match missing.result.unwrap_err() {
        Failure::Plugin(PluginError::Failed(m)) => {
            assert!(
                m.contains("`9.9.9` not found") && m.contains("1.10.0, 1.9.0, 1.2.0"),
                "{m}"
            )
        }
        other => panic!("expected a plugin failure, got {other}"),
    }
}

#[tokio::test]
async fn http_check_as_task_and_gate() {
    let server = TestServer::start("all systems go");
    let check = load("http-check");
    assert_eq!(check.worlds(), [World::Task, World::Gate]);
    let granted = || Sandbox {
        grants: Grants::none().host(server.addr.to_string()).unwrap(),
        ..tight()
    };
    let config = |extra: serde_json::Value| {
        let mut c = json!({"url": server.url("/health")});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        input(c)
    };

    let ok = host()
        .run_task(&check, granted(), &config(json!({"body_contains": "go"})))
        .await;
    assert_eq!(output(&ok.result.unwrap(), "status"), Some("200"));

    let wrong_body = host()
        .run_task(&check, granted(), &config(json!({"body_contains": "no"})))
        .await;
    assert!(
        matches!(wrong_body.result, Err(Failure::Plugin(PluginError::Failed(m))) if m.contains("does not contain"))
    );

    assert_eq!(
        host()
            .evaluate_gate(&check, granted(), &config(json!({})))
            .await
            .result,
        Ok(Health::Healthy)
    );
    server.set_status(503);
    match host()
        .evaluate_gate(&check, granted(), &config(json!({})))
        .await
        .result
    {
        Ok(Health::Unhealthy(why)) => assert!(why.contains("status 503, expected 200"), "{why}"),
        other => panic!("expected unhealthy, got {other:?}"),
    }
    let task = host().run_task(&check, granted(), &config(json!({}))).await;
    assert!(task.result.is_err(), "as a task, a wrong status fails");

    let hits = server.hits();
    let denied = host()
        .evaluate_gate(&check, tight(), &config(json!({})))
        .await;
    match denied.result {
        Ok(Health::Unhealthy(why)) => assert!(why.contains("not granted"), "{why}"),
        other => panic!("expected unhealthy, got {other:?}"),
    }
    assert_eq!(
        server.hits(),
        hits,
        "the ungranted request never left the host"
    );
}

#[tokio::test]
async fn the_template_plugin_works_as_shipped() {
    let tmp = tempfile::tempdir().unwrap();
    let template = load(TEMPLATE);
    let sandbox = dirs(&[(tmp.path(), "/out", Access::ReadWrite)]);
    let run = host()
        .run_task(
            &template,
            sandbox,
            &input(json!({"name": "world", "file": "/out/greeting.txt"})),
        )
        .await;
    assert_eq!(
        output(&run.result.unwrap(), "greeting-file"),
        Some("/out/greeting.txt")
    );
    let text = std::fs::read_to_string(tmp.path().join("greeting.txt")).unwrap();
    assert_eq!(text, "Hello, world! (space-game-7 on dev)\n");
}

#[test]
fn loading_reports_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let err = host().load(&PluginRef::Builtin("kopy".into())).unwrap_err();
    assert!(matches!(err, LoadError::UnknownBuiltin(_)));
    assert!(
        err.to_string().contains(
            "built-ins: copy, dir-source, http-check, http-request, http-source, oci-source, template"
        ),
        "{err}"
    );

    let missing = tmp.path().join("missing.wasm");
    let err = host().load(&PluginRef::File(missing)).unwrap_err();
    assert!(err.to_string().starts_with("cannot read plugin"), "{err}");

    let core = host()
        .load_bytes(b"\0asm\x01\0\0\0", "core.wasm".into())
        .unwrap_err();
    assert!(matches!(core, LoadError::NotAComponent(_)));
    assert!(core.to_string().contains("wasm32-wasip2"), "{core}");

    let junk = host()
        .load_bytes(b"#!/bin/sh\necho hi\n", "script.wasm".into())
        .unwrap_err();
    assert!(
        matches!(junk, LoadError::File(FileError::NotWasm(_))),
        "{junk}"
    );
    assert!(!junk.to_string().contains("0x23"), "no byte quoted: {junk}");

    // WebAssembly that does not validate keeps wasmparser's reason.
    let broken = host()
        .load_bytes(b"\0asm\x0d\0\x01\0\xff", "broken.wasm".into())
        .unwrap_err();
    assert!(matches!(broken, LoadError::Compile { .. }), "{broken}");
}

#[test]
fn plugin_refs_tell_files_from_built_ins() {
    let base = Path::new("/pipelines");
    assert_eq!(
        PluginRef::parse("copy", base),
        PluginRef::Builtin("copy".into())
    );
    assert_eq!(
        PluginRef::parse("plugins/deploy.wasm", base),
        PluginRef::File("/pipelines/plugins/deploy.wasm".into())
    );
    assert_eq!(
        PluginRef::parse("/abs/x.wasm", base),
        PluginRef::File("/abs/x.wasm".into())
    );
}

#[tokio::test]
async fn compiled_plugins_are_cached_on_disk_and_bad_cache_files_are_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let config = || HostConfig {
        cache_dir: Some(tmp.path().to_owned()),
        ..HostConfig::default()
    };
    let reference = PluginRef::File(TESTKIT.into());
    let digest = {
        let first = PluginHost::new(config()).unwrap();
        first.load(&reference).unwrap().digest()
    };
    let cached: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1);
    let name = cached[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&digest.hex()) && name.ends_with(".cwasm"),
        "{name}"
    );

    // A second engine loads the cached compilation and runs it.
    let second = PluginHost::new(config()).unwrap();
    let plugin = second.load(&reference).unwrap();
    let run = second
        .run_task(&plugin, tight(), &input(json!({"action": "noop"})))
        .await;
    assert!(run.result.is_ok());

    // A corrupted cache file is discarded and the component recompiled.
    std::fs::write(&cached[0], b"garbage").unwrap();
    let third = PluginHost::new(config()).unwrap();
    let plugin = third.load(&reference).unwrap();
    let run = third
        .run_task(&plugin, tight(), &input(json!({"action": "noop"})))
        .await;
    assert!(run.result.is_ok());
    assert_ne!(std::fs::read(&cached[0]).unwrap(), b"garbage");
}
