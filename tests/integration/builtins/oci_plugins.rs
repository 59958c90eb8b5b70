//! Plugins by OCI reference, against a real registry: `sluice plugin push` publishes a
//! component and prints its digest; a pipeline naming it by tag is pinned by `validate` and
//! runs; a moved tag changes nothing pinned; a wrong digest, a corrupted registry blob, a
//! tampered plugin store and an unlisted registry (service mode) are each refused.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::registry::Registry;

fn sluice(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .env_remove("SLUICE_DATA_DIR")
        .output()
        .expect("sluice runs")
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Pushes built-in `plugin` to `oci://REGISTRY/REPO:TAG` with the CLI; the printed digest.
fn push(dir: &Path, registry: &Registry, plugin: &str, target: &str) -> String {
    let reference = format!("oci://{}/{target}", registry.addr);
    let pushed = sluice(dir, &["plugin", "push", plugin, &reference]);
    assert!(pushed.status.success(), "{}", said(&pushed));
    let out = String::from_utf8_lossy(&pushed.stdout).into_owned();
    let digest = out
        .lines()
        .find(|l| l.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest printed: {out}"))
        .to_owned();
    let (repo, tag) = target.split_once(':').unwrap();
    let head = registry
        .call(
            "HEAD",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("accept", "application/vnd.oci.image.manifest.v1+json")],
            &[],
        )
        .unwrap();
    assert_eq!(
        head.header("docker-content-digest"),
        Some(digest.as_str()),
        "the digest printed is the registry's"
    );
    digest
}

/// A pipeline deploying build 1.0 of `builds/` into `www/` with the task `plugin`.
fn pipeline(dir: &Path, plugin: &str) {
    std::fs::create_dir_all(dir.join("builds/1.0")).unwrap();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("builds/1.0/index.html"), "hello from the registry").unwrap();
    let text = format!(
        r#"version = 1
name = "web"

[artifacts.site]
source = "dir-source"
config = {{ path = "/builds" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/builds", guest = "/builds" }}]

[[stages]]
name = "dev"
[[stages.tasks]]
plugin = "{plugin}"
config = {{ from = "site", to = "/www" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/www", guest = "/www", access = "rw" }}]
"#
    );
    std::fs::write(dir.join("pipeline.toml"), text).unwrap();
}

#[test]
fn a_pushed_task_is_pinned_by_validate_and_runs_from_the_plugin_store() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digest = push(dir, &registry, "copy", "team/copy:1.0");
    let tagged = format!("oci://{}/team/copy:1.0", registry.addr);
    pipeline(dir, &tagged);

    let validated = sluice(dir, &["validate", "pipeline.toml"]);
    assert!(validated.status.success(), "{}", said(&validated));
    assert!(
        said(&validated).contains(&format!("plugin {tagged} pinned to {digest}")),
        "{}",
        said(&validated)
    );

    // The plugin commands take a reference too.
    let inspected = sluice(dir, &["plugin", "inspect", &tagged]);
    assert!(inspected.status.success(), "{}", said(&inspected));
    let copy = sluice::plugin::Digest::of(sluice::builtin::builtin("copy").unwrap().bytes);
    assert!(
        said(&inspected).contains(&format!("digest:   {copy}")),
        "{}",
        said(&inspected)
    );

    // The tag moves to another component: what is pinned does not.
    let moved = push(dir, &registry, "dir-source", "team/copy:1.0");
    assert_ne!(moved, digest);
    let pinned = format!("oci://{}/team/copy@{digest}", registry.addr);
    pipeline(dir, &pinned);
    let ran = sluice(dir, &["run", "pipeline.toml"]);
    assert!(ran.status.success(), "{}", said(&ran));
    assert_eq!(
        std::fs::read_to_string(dir.join("www/index.html")).unwrap(),
        "hello from the registry"
    );
    let kept = dir
        .join(".sluice/plugins/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    assert!(kept.is_file(), "the manifest is kept in the plugin store");

    // Stored anew, the tag resolves to what it names now: an artifact source, refused as a
    // task.
    pipeline(dir, &tagged);
    let refused = sluice(dir, &["validate", "pipeline.toml"]);
    assert!(!refused.status.success(), "{}", said(&refused));
    assert!(
        said(&refused).contains("does not export the task world"),
        "{}",
        said(&refused)
    );
    assert!(
        dir.join(".sluice/plugins/sha256")
            .join(moved.strip_prefix("sha256:").unwrap())
            .is_file(),
        "the new digest was pulled"
    );
}

#[test]
fn a_wrong_digest_a_corrupted_blob_and_a_tampered_store_are_refused() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digest = push(dir, &registry, "copy", "team/copy:1.0");

    // A digest the registry does not have.
    let wrong = format!(
        "oci://{}/team/copy@sha256:{}",
        registry.addr,
        "0".repeat(64)
    );
    pipeline(dir, &wrong);
    let refused = sluice(dir, &["validate", "pipeline.toml"]);
    assert!(!refused.status.success());
    assert!(
        said(&refused).contains(&format!("plugin `{wrong}`")),
        "{}",
        said(&refused)
    );
    assert!(
        !dir.join(".sluice/plugins/sha256")
            .join("0".repeat(64))
            .exists()
    );

    // The component's blob is corrupted in the registry: the pull is refused.
    let pinned = format!("oci://{}/team/copy@{digest}", registry.addr);
    let manifest = registry
        .call(
            "GET",
            &format!("/v2/team/copy/manifests/{digest}"),
            &[("accept", "application/vnd.oci.image.manifest.v1+json")],
            &[],
        )
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let blob = registry.blob_file(&layer);
    let good = std::fs::read(&blob).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&blob, &bad).unwrap();
    pipeline(dir, &pinned);
    let refused = sluice(dir, &["validate", "pipeline.toml"]);
    assert!(!refused.status.success());
    assert!(said(&refused).contains("digest"), "{}", said(&refused));
    assert!(
        !dir.join(".sluice/plugins/sha256")
            .join(digest.strip_prefix("sha256:").unwrap())
            .exists()
    );

    // Restored, it is pulled; then its bytes in the plugin store are changed: refused.
    std::fs::write(&blob, &good).unwrap();
    let validated = sluice(dir, &["validate", "pipeline.toml"]);
    assert!(validated.status.success(), "{}", said(&validated));
    let kept = dir
        .join(".sluice/plugins/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    std::fs::write(&kept, &bad).unwrap();
    let ran = sluice(dir, &["run", "pipeline.toml"]);
    assert!(!ran.status.success(), "{}", said(&ran));
    assert!(said(&ran).contains("were changed"), "{}", said(&ran));
    assert!(!dir.join("www/index.html").exists(), "nothing deployed");
}

#[test]
fn push_refuses_what_is_not_a_plugin_and_a_target_without_a_tag() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("notes.wasm"), "not wasm").unwrap();
    let target = format!("oci://{}/team/x:1", registry.addr);
    let refused = sluice(dir, &["plugin", "push", "notes.wasm", &target]);
    assert!(!refused.status.success());
    assert!(
        said(&refused).contains("not a WebAssembly component"),
        "{}",
        said(&refused)
    );
    let untagged = format!("oci://{}/team/x@sha256:{}", registry.addr, "a".repeat(64));
    let refused = sluice(dir, &["plugin", "push", "copy", &untagged]);
    assert!(!refused.status.success());
    assert!(
        said(&refused).contains("push to a tag"),
        "{}",
        said(&refused)
    );
    let tags = registry
        .call("GET", "/v2/team/x/tags/list", &[], &[])
        .unwrap();
    assert_eq!(tags.status, 404, "nothing was pushed: {tags:?}");
}

/// Service mode pulls only from the registries `sluice.toml` lists; from one it lists, the
/// stored pipeline (file and store) carries the digest its tag resolved to; a restart keeps
/// that digest, with the tag moved and the registry gone.
#[test]
fn the_service_pins_from_listed_registries_only() {
    use sluice::registry::{Credentials, Registries};
    use sluice::service::config::{ApiLimits, PluginFiles};
    use sluice::service::{Service, ServiceConfig};
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let digest = push(tmp.path(), &registry, "copy", "team/copy:1.0");
    let pipelines = tmp.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    // A runtime of its own per service: dropped, it ends the service's tasks and closes its
    // store, so the same data directory can be opened again.
    let config = |registries: Registries, data: &str, max_size: u64| ServiceConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: tmp.path().join(data),
        pipelines: pipelines.clone(),
        tokens: Default::default(),
        limits: ApiLimits::default(),
        plugin_files: PluginFiles {
            max_size,
            ..Default::default()
        },
        registries,
        pools: Default::default(),
        tls: None,
    };
    let start = |registries: Registries, data: &str, max_size: u64| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let config = config(registries, data, max_size);
        let service = runtime.block_on(async { Service::start(config).unwrap() });
        (service, runtime)
    };
    let tagged = format!("oci://{}/team/copy:1.0", registry.addr);
    let text = format!(
        "version = 1\nname = \"web\"\n[[stages]]\nname = \"dev\"\n[[stages.tasks]]\nplugin = \"{tagged}\"\n\
         config = {{ from = \"a\", to = \"/b\" }}\n"
    );

    let (service, _runtime) = start(Registries::default(), "refusing", 64 << 20);
    let refused = service
        .put_pipeline("web", &text, "ada")
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(&format!(
            "registry `{}` is not one this service pulls plugins from",
            registry.addr
        )),
        "{refused}"
    );
    assert!(!pipelines.join("web.toml").exists(), "nothing written");
    drop(service);

    let listed: std::collections::BTreeMap<_, _> =
        [(registry.addr.to_string(), Credentials::Anonymous)].into();
    // A component over `limits.plugin-size` is not pulled.
    let (service, _runtime) = start(Registries::only(listed.clone()), "small", 4096);
    let refused = service
        .put_pipeline("web", &text, "ada")
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("over the limit of 4096 (limits.plugin-size)"),
        "{refused}"
    );
    assert!(!pipelines.join("web.toml").exists(), "nothing written");
    drop(service);

    // At start, a pipeline file naming a tag is pinned as it is stored (the file stays as
    // the operator wrote it).
    let site = text.replace("name = \"web\"", "name = \"site\"");
    std::fs::write(pipelines.join("site.toml"), &site).unwrap();
    let (service, runtime) = start(Registries::only(listed.clone()), "pulling", 64 << 20);
    let started = service.pipeline("site").unwrap();
    let pinned = format!("oci://{}/team/copy:1.0@{digest}", registry.addr);
    assert!(started.source.contains(&pinned), "{}", started.source);
    assert_eq!(
        std::fs::read_to_string(pipelines.join("site.toml")).unwrap(),
        site
    );

    let saved = service.put_pipeline("web", &text, "ada").unwrap();
    assert!(saved.source.contains(&pinned), "{}", saved.source);
    let file = std::fs::read_to_string(pipelines.join("web.toml")).unwrap();
    assert!(file.contains(&pinned), "{file}");
    assert_eq!(saved.loaded.plan.stages[0].tasks[0].plugin, pinned);
    drop(service);
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));

    // The tag moves, then the registry goes away: the restart keeps what was resolved.
    let moved = push(tmp.path(), &registry, "dir-source", "team/copy:1.0");
    assert_ne!(moved, digest);
    drop(registry);
    let (service, runtime) = start(Registries::only(listed), "pulling", 64 << 20);
    for name in ["site", "web"] {
        let source = service.pipeline(name).unwrap().source;
        assert!(source.contains(&pinned), "{name}: {source}");
    }
    drop(service);
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));

    // Taken off the list, a registry's plugins are refused even from the plugin store.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let unlisted = config(Registries::default(), "pulling", 64 << 20);
    let Err(refused) = runtime.block_on(async { Service::start(unlisted) }) else {
        panic!("the service started with a pipeline from an unlisted registry");
    };
    assert!(
        refused
            .to_string()
            .contains("is not one this service pulls plugins from"),
        "{refused}"
    );
}

/// The engine's own registry client answers a bearer challenge through the token service
/// (which gets the configured credentials, once); every later request to the registry carries
/// the token, and a download redirected elsewhere does not; the pulled component is the one
/// the manifest names.
#[test]
fn a_plugin_is_pulled_through_a_bearer_challenge_with_the_configured_credentials() {
    use crate::support::{Canned, Scripted};
    use sha2::{Digest as _, Sha256};
    use sluice::plugin::{HostConfig, PluginHost};
    use sluice::registry::{Credentials, Registries};
    let server = Scripted::start();
    let component = sluice::builtin::builtin("copy").unwrap().bytes;
    let sha = |bytes: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    let config = b"{}".as_slice();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": sha(config), "size": 2},
        "layers": [{"mediaType": "application/wasm", "digest": sha(component), "size": component.len()}],
    }))
    .unwrap();
    let challenge = format!(
        "Bearer realm=\"{}\",service=\"registry.test\",scope=\"repository:team/copy:pull\"",
        server.url("/token")
    );
    let tagged = "/v2/team/copy/manifests/1.0";
    let by_digest = format!("/v2/team/copy/manifests/{}", sha(&manifest));
    server
        .reply(
            tagged,
            Canned::new(401, "").header("www-authenticate", &challenge),
        )
        .reply(tagged, Canned::new(200, manifest.clone()));
    server.set(&by_digest, Canned::new(200, manifest.clone()));
    // The blob is served from elsewhere, by redirect (as registries send downloads to a CDN).
    let storage = Scripted::start();
    storage.set("/blobs/copy?sig=1", Canned::new(200, component.to_vec()));
    server.set(
        &format!("/v2/team/copy/blobs/{}", sha(component)),
        Canned::new(307, "").header("location", &storage.url("/blobs/copy?sig=1")),
    );
    server.set(
        "/token?service=registry.test&scope=repository:team/copy:pull",
        Canned::json(200, &serde_json::json!({"token": "tok-9"})),
    );

    let tmp = tempfile::tempdir().unwrap();
    let host = PluginHost::new(HostConfig::in_data_dir(tmp.path())).unwrap();
    let credentials = Credentials::Basic {
        username: "ci".into(),
        password: "s3cret".into(),
    };
    let registries = Registries::only([(server.addr.to_string(), credentials)].into());
    let text = format!("oci://{}/team/copy:1.0", server.addr);
    let pinned = sluice::registry::pull(&text, &host, &registries).unwrap();
    assert_eq!(pinned, format!("{text}@{}", sha(&manifest)));
    let plugin = host.load(&sluice::plugin::PluginRef::Oci(pinned)).unwrap();
    assert_eq!(plugin.digest().to_string(), sha(component));

    let seen = server.seen();
    let token = seen.iter().find(|r| r.path.starts_with("/token")).unwrap();
    assert_eq!(token.header("authorization"), Some("Basic Y2k6czNjcmV0"));
    let after: Vec<_> = seen
        .iter()
        .skip_while(|r| !r.path.starts_with("/token"))
        .skip(1)
        .collect();
    assert_eq!(
        after.len(),
        3,
        "the tag again, the manifest, the blob: {seen:?}"
    );
    assert!(
        after
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer tok-9")),
        "{after:?}"
    );
    let downloads = storage.seen();
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    assert_eq!(
        downloads[0].header("authorization"),
        None,
        "the registry's token stays with the registry"
    );
}
