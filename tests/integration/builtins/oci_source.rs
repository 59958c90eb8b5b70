//! `oci-source` against a real registry (Debian's docker-registry, Distribution 2.8) the tests
//! push to: tags listed and filtered, layers fetched under their titles and verified; a tag
//! moved after a release was created does not change it; a corrupted blob and a wrong digest
//! are refused. Token authentication and tag paging against a scripted registry.

use serde_json::json;
use sluice::types::{Access, Version};

use super::{failure, sandbox};
use crate::support::registry::Registry;
use crate::support::{Canned, Scripted, host, load};

fn config(registry: &Registry, extra: serde_json::Value) -> String {
    let mut config = json!({"registry": registry.addr.to_string(), "repository": "team/site", "plain-http": true});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config.to_string()
}

async fn list(
    registry: &Registry,
    extra: serde_json::Value,
) -> Result<Vec<Version>, sluice::types::Failure> {
    let sandbox = sandbox(&[registry.addr.to_string()], &[]);
    host()
        .list_versions(&load("oci-source"), sandbox, &config(registry, extra))
        .await
        .result
}

/// Fetches `version` into a fresh directory; its path and the result.
async fn fetch(
    registry: &Registry,
    tmp: &std::path::Path,
    version: &str,
) -> (std::path::PathBuf, Result<Version, sluice::types::Failure>) {
    let into = tmp.join(format!("fetched-{}", version.replace(':', "-")));
    std::fs::create_dir_all(&into).unwrap();
    let sandbox = sandbox(
        &[registry.addr.to_string()],
        &[(&into, "/artifact", Access::ReadWrite)],
    );
    let run = host()
        .fetch(
            &load("oci-source"),
            sandbox,
            &config(registry, json!({})),
            version,
            "/artifact",
        )
        .await;
    (into, run.result)
}

fn metadata<'a>(version: &'a Version, key: &str) -> Option<&'a str> {
    version
        .metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn lists_filters_and_fetches_tags_by_digest() {
    let registry = Registry::start();
    let mut digests = std::collections::BTreeMap::new();
    for tag in ["1.0.0", "1.2.0", "2.0.0", "latest"] {
        let page = format!("site {tag}");
        let files: &[(&str, &[u8])] =
            &[("index.html", page.as_bytes()), ("css/site.css", b"body{}")];
        digests.insert(tag, registry.push_files("team/site", tag, files));
    }

    let all = list(&registry, json!({})).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["2.0.0", "1.2.0", "1.0.0", "latest"]);
    for version in &all {
        let digest = &digests[version.id.as_str()];
        assert_eq!(
            metadata(version, "pin"),
            Some(digest.as_str()),
            "{version:?}"
        );
        assert_eq!(metadata(version, "digest"), Some(digest.as_str()));
    }
    let ranged = list(&registry, json!({"semver": ">=1.0, <2"}))
        .await
        .unwrap();
    let ids: Vec<&str> = ranged.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["1.2.0", "1.0.0"]);
    let globbed = list(
        &registry,
        json!({"tags": ["lat*", "2.*"], "max-versions": 1}),
    )
    .await
    .unwrap();
    let ids: Vec<&str> = globbed.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["2.0.0"], "newest first, then cut to max-versions");

    let tmp = tempfile::tempdir().unwrap();
    let (into, fetched) = fetch(&registry, tmp.path(), &digests["1.2.0"]).await;
    let fetched = fetched.unwrap();
    assert_eq!(
        std::fs::read_to_string(into.join("index.html")).unwrap(),
        "site 1.2.0"
    );
    assert_eq!(
        std::fs::read_to_string(into.join("css/site.css")).unwrap(),
        "body{}"
    );
    assert_eq!(fetched.created, Some(1_796_040_000));
    let leftovers: Vec<_> = std::fs::read_dir(&into)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "nothing but the files: {leftovers:?}");

    let (into, fetched) = fetch(&registry, tmp.path(), "latest").await;
    fetched.unwrap();
    assert_eq!(
        std::fs::read_to_string(into.join("index.html")).unwrap(),
        "site latest"
    );
}

#[tokio::test]
async fn a_corrupted_blob_and_a_wrong_digest_are_refused() {
    let registry = Registry::start();
    let page = b"<h1>the real page</h1>".to_vec();
    let digest = registry.push_files("team/site", "1.0.0", &[("index.html", &page)]);
    let tmp = tempfile::tempdir().unwrap();

    let wrong = format!("sha256:{}", "0".repeat(64));
    let (_, result) = fetch(&registry, tmp.path(), &wrong).await;
    let message = failure(result);
    assert!(message.contains("is not in the registry"), "{message}");
    for bad in ["../../v2/_catalog", "1.0.0?x=1", "sha256:XYZ"] {
        let (_, result) = fetch(&registry, tmp.path(), bad).await;
        let message = failure(result);
        assert!(
            message.contains("neither a tag nor a sha256 digest"),
            "{bad}: {message}"
        );
    }

    // Same length, other bytes, on the registry's disk: the registry serves it as it is.
    let layer = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&page))
    );
    let file = registry.blob_file(&layer);
    let mut corrupted = std::fs::read(&file).unwrap();
    corrupted[5] ^= 0x20;
    std::fs::write(&file, &corrupted).unwrap();
    let (into, result) = fetch(&registry, tmp.path(), &digest).await;
    let message = failure(result);
    assert!(
        message.contains("layer `index.html` does not match its manifest"),
        "{message}"
    );
    assert!(
        std::fs::read_dir(&into).unwrap().next().is_none(),
        "nothing is left in the destination"
    );
}

#[tokio::test]
async fn hostile_configuration_and_layer_titles_are_refused() {
    let registry = Registry::start();
    let blob = registry.push_blob("team/site", b"pwned");
    let config = registry.push_blob("team/site", b"{}");
    for (tag, title) in [
        ("slip", "../evil.txt"),
        ("abs", "/etc/passwd"),
        ("dot", "a/./b"),
    ] {
        let manifest = json!({
            "schemaVersion": 2, "mediaType": crate::support::registry::MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": blob, "size": 5,
                        "annotations": {"org.opencontainers.image.title": title}}],
        });
        registry.push_manifest("team/site", tag, &manifest);
        let tmp = tempfile::tempdir().unwrap();
        let (into, result) = fetch(&registry, tmp.path(), tag).await;
        let message = failure(result);
        assert!(
            message.contains("is not a relative path inside the destination"),
            "{title}: {message}"
        );
        assert!(std::fs::read_dir(&into).unwrap().next().is_none());
        assert!(!tmp.path().join("evil.txt").exists());
    }

    for (extra, expected) in [
        (
            json!({"repository": "../x"}),
            "is not a registry repository name",
        ),
        (
            json!({"repository": "Team/Site"}),
            "is not a registry repository name",
        ),
        (
            json!({"registry": "http://evil/x"}),
            "is not `host` or `host:port`",
        ),
        (
            json!({"username": "ci"}),
            "`username` and `password` together",
        ),
        (json!({"semver": "about two"}), "is not a version range"),
    ] {
        let result = list(&registry, extra).await;
        let message = failure(result);
        assert!(message.contains(expected), "{expected}: {message}");
    }
    let denied = host()
        .list_versions(
            &load("oci-source"),
            sandbox(&[], &[]),
            &config_for(&registry),
        )
        .await;
    assert!(failure(denied.result).contains("not granted"));
}

fn config_for(registry: &Registry) -> String {
    config(registry, json!({}))
}

/// A registry that wants a bearer token from its token service (given basic credentials) and
/// pages its tags: the source follows both.
#[tokio::test]
async fn answers_a_bearer_challenge_and_follows_tag_pages() {
    let server = Scripted::start();
    let challenge = format!(
        r#"Bearer realm="{}",service="registry.test",scope="repository:team/site:pull""#,
        server.url("/token")
    );
    let first = "/v2/team/site/tags/list?n=1000";
    server
        .reply(
            first,
            Canned::new(401, "").header("www-authenticate", &challenge),
        )
        .reply(
            first,
            Canned::json(
                200,
                &json!({"name": "team/site", "tags": ["1.0.0", "1.1.0"]}),
            )
            .header(
                "link",
                r#"</v2/team/site/tags/list?n=1000&last=1.1.0>; rel="next""#,
            ),
        );
    server.reply(
        "/v2/team/site/tags/list?n=1000&last=1.1.0",
        Canned::json(200, &json!({"name": "team/site", "tags": ["2.0.0"]})),
    );
    server.reply(
        "/token?service=registry.test&scope=repository:team/site:pull",
        Canned::json(200, &json!({"token": "tok-123"})),
    );
    for tag in ["1.0.0", "1.1.0", "2.0.0"] {
        let digest = format!(
            "sha256:{}",
            tag.replace('.', "").repeat(22)[..64].to_owned()
        );
        server.reply(
            &format!("/v2/team/site/manifests/{tag}"),
            Canned::new(200, "").header("docker-content-digest", &digest),
        );
    }
    let config = json!({
        "registry": server.addr.to_string(), "repository": "team/site", "plain-http": true,
        "username": "ci", "password": "s3cret",
    });
    let listed = host()
        .list_versions(
            &load("oci-source"),
            sandbox(&[server.addr.to_string()], &[]),
            &config.to_string(),
        )
        .await;
    let versions = listed.result.unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["2.0.0", "1.1.0", "1.0.0"]);
    let seen = server.seen();
    let token = seen.iter().find(|r| r.path.starts_with("/token")).unwrap();
    assert_eq!(
        token.header("authorization"),
        Some("Basic Y2k6czNjcmV0"),
        "ci:s3cret"
    );
    let after: Vec<_> = seen
        .iter()
        .skip_while(|r| !r.path.starts_with("/token"))
        .skip(1)
        .collect();
    assert!(after.len() >= 5, "{seen:?}");
    assert!(
        after
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer tok-123")),
        "{after:?}"
    );
}

/// In a release: the version's manifest digest is pinned when the release is created, so a
/// tag moved before the deployment does not change what it deploys; the next release takes
/// the tag's new content.
#[tokio::test]
async fn a_moved_tag_does_not_change_an_existing_release() {
    use crate::secrets::{create, drive, engine, project};
    let registry = Registry::start();
    let old = registry.push_files("team/site", "1.0.0", &[("index.html", b"first build")]);
    let pipeline = format!(
        r#"
version = 1
name = "web"

[artifacts.site]
source = "oci-source"
version = "1.0.0"
config = {{ registry = "{addr}", repository = "team/site", plain-http = true }}
grants.hosts = ["{addr}"]

[[stages]]
name = "dev"
[[stages.tasks]]
name = "deploy"
plugin = "copy"
config = {{ from = "site", to = "/www" }}
grants.dirs = [{{ host = "$(sluice.pipeline-dir)/www", guest = "/www", access = "rw" }}]
"#,
        addr = registry.addr
    );
    let project = project(&pipeline);
    std::fs::create_dir_all(project.path().join("www")).unwrap();
    let engine = engine(&project);
    let first = create(&engine, &project).await;

    let moved = registry.push_files(
        "team/site",
        "1.0.0",
        &[("index.html", b"rebuilt under the same tag")],
    );
    assert_ne!(old, moved);
    let release = drive(&engine, &first, true).await;
    assert_eq!(
        release.state,
        sluice::core::ReleaseState::Succeeded,
        "{release:#?}"
    );
    let site = &release.artifacts[0].version;
    assert_eq!(
        metadata(site, "pin"),
        Some(old.as_str()),
        "the release recorded the digest"
    );
    let page = || std::fs::read_to_string(project.path().join("www/index.html")).unwrap();
    assert_eq!(page(), "first build");

    let second = create(&engine, &project).await;
    drive(&engine, &second, true).await;
    assert_eq!(page(), "rebuilt under the same tag");
}
