//! `http-source` against a scripted artifact store: versions from the JSON index, archives
//! fetched, verified and unpacked; and every hostile download refused with nothing written
//! outside the destination (zip-slip, a tar symlink, an oversize archive, a wrong digest).

use std::io::Write;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};
use sluice::types::Access;

use super::{failure, sandbox};
use crate::support::{Canned, Scripted, host, load};

/// An artifact store serving `/site/index.json` and the files it lists.
struct Store {
    server: Scripted,
    versions: Vec<serde_json::Value>,
}

impl Store {
    fn new() -> Self {
        Self {
            server: Scripted::start(),
            versions: Vec::new(),
        }
    }

    /// Serves `bytes` as `file` and lists it as version `id`; `entry` adds or overrides fields.
    fn add(&mut self, id: &str, file: &str, bytes: &[u8], entry: serde_json::Value) -> &mut Self {
        self.server
            .reply(&format!("/site/{file}"), Canned::new(200, bytes));
        let mut listed = json!({
            "id": id, "url": file, "sha256": hex::encode(Sha256::digest(bytes)),
            "size": bytes.len(), "created": "2026-11-30T12:00:00Z", "branch": "main",
            "commit": "9f2c1e", "tags": ["stable"],
        });
        listed
            .as_object_mut()
            .unwrap()
            .extend(entry.as_object().unwrap().clone());
        self.versions.push(listed);
        self.server.set(
            "/site/index.json",
            Canned::json(200, &json!({"versions": self.versions})),
        );
        self
    }

    fn config(&self, extra: serde_json::Value) -> String {
        let mut config = json!({"index": self.server.url("/site/index.json")});
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        config.to_string()
    }

    /// Fetches `version` into a fresh destination inside `tmp`; the destination's path and the
    /// result.
    async fn fetch(
        &self,
        tmp: &Path,
        version: &str,
        extra: serde_json::Value,
    ) -> (
        std::path::PathBuf,
        Result<sluice::types::Version, sluice::types::Failure>,
    ) {
        let into = tmp.join(format!("fetched-{}", version.replace(['@', ':'], "-")));
        std::fs::create_dir_all(&into).unwrap();
        let sandbox = sandbox(
            &[self.server.addr.to_string()],
            &[(&into, "/artifact", Access::ReadWrite)],
        );
        let run = host()
            .fetch(
                &load("http-source"),
                sandbox,
                &self.config(extra),
                version,
                "/artifact",
            )
            .await;
        (into, run.result)
    }
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        // Written raw: `set_path` itself refuses the hostile names these tests need.
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (path, data) in entries {
        writer
            .start_file(*path, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// Everything under `dir`, as relative paths.
fn contents(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn lists_the_index_and_fetches_tar_zip_and_single_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::new();
    store
        .add(
            "1.0.0",
            "site-1.0.0.tar.gz",
            &tar_gz(&[("site/index.html", b"v1"), ("site/css/a.css", b"a{}")]),
            json!({}),
        )
        .add(
            "1.1.0",
            "site-1.1.0.zip",
            &zip(&[
                ("index.html", b"v1.1"),
                ("img/", b""),
                ("img/logo.svg", b"<svg/>"),
            ]),
            json!({"created": 1_800_000_000, "tags": []}),
        )
        .add(
            "tool",
            "bin/deploy-tool",
            b"#!/bin/sh\necho hi\n",
            json!({"branch": null, "created": "2026-11-30T13:30:00.250+01:30"}),
        );

    let sandbox = sandbox(&[store.server.addr.to_string()], &[]);
    let versions = host()
        .list_versions(&load("http-source"), sandbox, &store.config(json!({})))
        .await
        .result
        .unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["1.1.0", "1.0.0", "tool"], "newest first");
    let tool = versions.iter().find(|v| v.id == "tool").unwrap();
    assert_eq!(
        tool.created,
        Some(1_796_040_000),
        "an offset is applied, a fraction dropped"
    );
    let first = versions.iter().find(|v| v.id == "1.0.0").unwrap();
    assert_eq!(first.created, Some(1_796_040_000));
    assert_eq!(
        (first.branch.as_deref(), first.commit.as_deref()),
        (Some("main"), Some("9f2c1e"))
    );
    assert_eq!(first.tags, ["stable"]);
    assert!(
        first
            .metadata
            .iter()
            .any(|(k, v)| k == "url" && v.ends_with("/site/site-1.0.0.tar.gz"))
    );

    let (into, fetched) = store.fetch(tmp.path(), "1.0.0", json!({})).await;
    let fetched = fetched.unwrap();
    assert_eq!(
        contents(&into),
        ["site", "site/css", "site/css/a.css", "site/index.html"]
    );
    assert_eq!(std::fs::read(into.join("site/index.html")).unwrap(), b"v1");
    assert!(
        fetched
            .metadata
            .iter()
            .any(|(k, v)| k == "files" && v == "2")
    );

    let (into, fetched) = store.fetch(tmp.path(), "1.1.0", json!({})).await;
    fetched.unwrap();
    assert_eq!(contents(&into), ["img", "img/logo.svg", "index.html"]);

    let (into, fetched) = store.fetch(tmp.path(), "tool", json!({})).await;
    fetched.unwrap();
    assert_eq!(contents(&into), ["deploy-tool"]);

    let (_, missing) = store.fetch(tmp.path(), "9.9.9", json!({})).await;
    let message = failure(missing);
    assert!(
        message.contains("`9.9.9` is not in the index") && message.contains("1.0.0, 1.1.0, tool"),
        "{message}"
    );
}

#[tokio::test]
async fn hostile_archives_are_refused_with_nothing_written_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::new();
    let mut symlink = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    symlink
        .append_link(&mut header, "passwd", "/etc/passwd")
        .unwrap();
    let mut hard = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Link);
    header.set_size(0);
    hard.append_link(&mut header, "shadow", "/etc/shadow")
        .unwrap();
    store
        .add(
            "slip-zip",
            "slip.zip",
            &zip(&[("ok.txt", b"fine"), ("../evil.txt", b"pwned")]),
            json!({}),
        )
        .add(
            "backslash",
            "bs.zip",
            &zip(&[("a\\..\\..\\evil.txt", b"pwned")]),
            json!({}),
        )
        .add(
            "slip-tar",
            "slip.tar.gz",
            &tar_gz(&[("a/../../evil.txt", b"pwned")]),
            json!({}),
        )
        .add(
            "absolute",
            "abs.tar.gz",
            &tar_gz(&[("/tmp/evil.txt", b"pwned")]),
            json!({}),
        )
        .add(
            "symlink",
            "link.tar",
            &symlink.into_inner().unwrap(),
            json!({}),
        )
        .add(
            "hardlink",
            "hard.tar",
            &hard.into_inner().unwrap(),
            json!({}),
        )
        .add(
            "big",
            "big.tar.gz",
            &tar_gz(&[("a.bin", &[0u8; 8192]), ("b.bin", &[0u8; 8192])]),
            json!({}),
        );

    for (version, expected) in [
        ("slip-zip", "`../evil.txt` refused: it climbs out with `..`"),
        ("slip-tar", "`a/../../evil.txt` refused: it climbs out"),
        ("backslash", "refused: its name has a backslash"),
        ("absolute", "`/tmp/evil.txt` refused: its path is absolute"),
        ("symlink", "`passwd` refused: it is a symbolic link"),
        ("hardlink", "`shadow` refused: it is a hard link"),
    ] {
        let (into, result) = store.fetch(tmp.path(), version, json!({})).await;
        let message = failure(result);
        assert!(message.contains(expected), "{version}: {message}");
        assert!(
            contents(&into).is_empty(),
            "{version}: {:?}",
            contents(&into)
        );
    }
    assert!(!tmp.path().join("evil.txt").exists());

    let (into, result) = store
        .fetch(tmp.path(), "big", json!({"max-unpacked": "12KiB"}))
        .await;
    assert!(failure(result).contains("unpacks to more than 12288 bytes (`max-unpacked`)"));
    assert!(contents(&into).is_empty());
    let (_, result) = store
        .fetch(tmp.path(), "big", json!({"max-files": 1}))
        .await;
    assert!(failure(result).contains("more than 1 entries"));
    let (_, result) = store
        .fetch(tmp.path(), "big", json!({"max-size": 64}))
        .await;
    assert!(failure(result).contains("over `max-size` (64 bytes)"));
}

#[tokio::test]
async fn a_download_that_does_not_match_the_index_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::new();
    let archive = tar_gz(&[("index.html", b"v2")]);
    let other = hex::encode(Sha256::digest(b"something else"));
    store
        .add("tampered", "t.tar.gz", &archive, json!({"sha256": other}))
        .add(
            "longer",
            "l.tar.gz",
            &archive,
            json!({"size": archive.len() - 10}),
        )
        .add(
            "short",
            "s.tar.gz",
            &archive,
            json!({"size": archive.len() + 10}),
        );
    let (into, result) = store.fetch(tmp.path(), "tampered", json!({})).await;
    let message = failure(result);
    assert!(
        message.contains(&format!("the index says sha256:{other}")),
        "{message}"
    );
    assert!(contents(&into).is_empty(), "{:?}", contents(&into));
    let (_, result) = store.fetch(tmp.path(), "longer", json!({})).await;
    assert!(failure(result).contains("is larger than"));
    let (_, result) = store.fetch(tmp.path(), "short", json!({})).await;
    let message = failure(result);
    assert!(
        message.contains(&format!(
            "is {} bytes, the index says {}",
            archive.len(),
            archive.len() + 10
        )),
        "{message}"
    );

    // A release fetches the pin it recorded: an index that now lists other bytes is refused.
    let pinned = format!("tampered@sha256:{}", hex::encode(Sha256::digest(&archive)));
    let (into, result) = store.fetch(tmp.path(), &pinned, json!({})).await;
    let message = failure(result);
    assert!(
        message.contains("version `tampered` changed in the index since the release was created"),
        "{message}"
    );
    assert!(contents(&into).is_empty());

    // A bad index is refused as a whole, naming what is wrong.
    store.server.set(
        "/bad/index.json",
        Canned::json(
            200,
            &json!({"versions": [{"id": "1", "url": "a", "sha256": "xyz"}]}),
        ),
    );
    let granted = || sandbox(&[store.server.addr.to_string()], &[]);
    let config = json!({"index": store.server.url("/bad/index.json")}).to_string();
    let listed = host()
        .list_versions(&load("http-source"), granted(), &config)
        .await;
    assert!(failure(listed.result).contains("`sha256 = \"xyz\"`, which is not 64 hex digits"));
    let digest = hex::encode(Sha256::digest(b"a"));
    store.server.set("/bad/index.json", Canned::json(200, &json!({"versions": [{"id": "1", "url": "a", "sha256": digest, "created": "2026-02-30T00:00:00Z"}]})));
    let listed = host()
        .list_versions(&load("http-source"), granted(), &config)
        .await;
    let message = failure(listed.result);
    assert!(
        message
            .contains("version `1`: `created = \"2026-02-30T00:00:00Z\"` is not an RFC 3339 time"),
        "{message}"
    );
}

/// In a release: the source's `authorization` header comes from a secret variable, the archive
/// lands in the workspace and a task deploys it; a reference the source cannot see is refused
/// by validation.
#[tokio::test]
async fn a_release_takes_its_artifact_from_the_store_with_a_secret_header() {
    use crate::secrets::{SECRET, create, drive, engine, project};
    let mut store = Store::new();
    store.add(
        "2.0.0",
        "site.tar.gz",
        &tar_gz(&[("index.html", b"site 2.0.0")]),
        json!({}),
    );
    let pipeline = |header: &str| {
        format!(
            r#"
version = 1
name = "web"

[variables]
builds-token = {{ secret = true, from-file = "secret/value.txt" }}

[artifacts.site]
source = "http-source"
config = {{ index = "{index}", headers = {{ authorization = "{header}" }} }}
grants.hosts = ["{addr}"]

[[stages]]
name = "dev"
[[stages.tasks]]
name = "deploy"
plugin = "copy"
config = {{ from = "site", to = "/www" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/www", guest = "/www", access = "rw" }}]
"#,
            index = store.server.url("/site/index.json"),
            addr = store.server.addr,
        )
    };
    let project = project(&pipeline("Bearer $(builds-token)"));
    std::fs::create_dir_all(project.path().join("www")).unwrap();
    let engine = engine(&project);
    let name = create(&engine, &project).await;
    let release = drive(&engine, &name, true).await;
    assert_eq!(
        release.state,
        sluice::core::ReleaseState::Succeeded,
        "{release:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(project.path().join("www/index.html")).unwrap(),
        "site 2.0.0"
    );
    let bearer = format!("Bearer {SECRET}");
    let seen = store.server.seen();
    assert!(
        seen.len() >= 3,
        "listed, then the index and the archive fetched: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|r| r.header("authorization") == Some(bearer.as_str()))
    );

    std::fs::write(project.pipeline(), pipeline("Bearer $(sluice.release)")).unwrap();
    let err = sluice::pipeline::load(&project.pipeline())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "artifact `site`: `$(sluice.release)` is not one of the pipeline's `[variables]`"
        ),
        "{err}"
    );
}
