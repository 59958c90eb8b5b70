//! `oci-source`: a built-in Sluice artifact source whose versions are the tags of a repository
//! on an OCI registry (the Distribution API), and whose files are the manifest's layers, each
//! written under its `org.opencontainers.image.title` (the ORAS convention).
//!
//! Listing asks the registry for every tag (`/v2/<name>/tags/list`, page by page), keeps those
//! that match `tags` (globs) and `semver` (a range), and records each one's manifest digest as
//! the version's `pin`: a release fetches that digest, so a tag moved later does not change it.
//! Fetching verifies the manifest and every layer against their digests and declared sizes.
//!
//! ```toml
//! [artifacts.site]
//! source = "oci-source"
//! config = { registry = "registry.example.com", repository = "web/site", semver = ">=1.2, <2", username = "ci", password = "$(registry-password)" }
//! grants.hosts = ["registry.example.com", "auth.example.com"]   # the registry and its token service
//! ```

mod names;
mod registry;
mod tags;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sluice_plugin_sdk::units::{self, Bytes, Duration};
use sluice_plugin_sdk::{ArtifactSource, Config, Error, Version, log};

use crate::registry::{Credentials, MANIFEST_TYPES, Registry};

/// Where a layer is written before it is checked.
const DOWNLOAD: &str = ".layer.sluice-tmp";
const TITLE: &str = "org.opencontainers.image.title";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Settings {
    /// `host[:port]` of the registry.
    registry: String,
    /// The repository, e.g. `team/site`.
    repository: String,
    /// Speak plain HTTP to the registry (a local one); HTTPS otherwise.
    #[serde(default)]
    plain_http: bool,
    /// Globs a tag must match (any of them); every tag when empty.
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    /// A semver range a tag must satisfy (`>=1.2, <2`); tags that are not versions are left out.
    pub(crate) semver: Option<String>,
    /// The most versions listed (the newest, by version order).
    #[serde(default = "max_versions")]
    pub(crate) max_versions: usize,
    username: Option<String>,
    password: Option<String>,
    /// A bearer token sent as it is.
    token: Option<String>,
    /// The most a version's layers may add up to.
    #[serde(default = "max_size")]
    max_size: Bytes,
    /// Bounds connecting and each wait for data, per request.
    #[serde(default = "timeout")]
    timeout: Duration,
}

fn max_versions() -> usize {
    100
}
fn max_size() -> Bytes {
    Bytes(1 << 30)
}
fn timeout() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}

impl Settings {
    fn registry(&self) -> Result<Registry, Error> {
        names::repository(&self.repository).map_err(Error::invalid_config)?;
        let host_ok = !self.registry.is_empty()
            && self.registry.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !host_ok {
            return Err(Error::invalid_config(format!(
                "registry `{}` is not `host` or `host:port` (no scheme, no path)",
                self.registry
            )));
        }
        let credentials = match (&self.username, &self.password, &self.token) {
            (None, None, None) => Credentials::Anonymous,
            (Some(username), Some(password), None) => Credentials::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            (None, None, Some(token)) => Credentials::Token(token.clone()),
            _ => {
                return Err(Error::invalid_config(
                    "give `username` and `password` together, or `token` alone",
                ));
            }
        };
        let scheme = if self.plain_http { "http" } else { "https" };
        Ok(Registry::new(
            format!("{scheme}://{}", self.registry),
            self.repository.clone(),
            credentials,
            self.timeout.0,
        ))
    }

    fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// An image manifest, as far as Sluice reads it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

struct OciSource;

impl ArtifactSource for OciSource {
    fn list_versions(config: Config) -> Result<Vec<Version>, Error> {
        let settings: Settings = config.parse()?;
        let registry = settings.registry()?;
        let filter = tags::Filter::new(&settings)?;
        let all = tags::list(&registry)?;
        let chosen = filter.choose(all, settings.max_versions);
        let mut versions = Vec::with_capacity(chosen.len());
        for tag in chosen {
            let digest = manifest_digest(&registry, &tag)?;
            versions.push(Version {
                id: tag,
                created: None,
                branch: None,
                tags: Vec::new(),
                commit: None,
                metadata: vec![
                    ("repository".to_owned(), settings.name()),
                    ("digest".to_owned(), digest.clone()),
                    ("pin".to_owned(), digest),
                ],
            });
        }
        Ok(versions)
    }

    fn fetch(config: Config, version: &str, destination: &str) -> Result<Version, Error> {
        let settings: Settings = config.parse()?;
        let registry = settings.registry()?;
        if !names::tag(version) && !names::digest(version) {
            return Err(Error::failed(format!(
                "`{version}` is neither a tag nor a sha256 digest"
            )));
        }
        let url = registry.url(&format!("manifests/{version}"));
        let response = registry.document("GET", &url, Some(MANIFEST_TYPES))?;
        if response.status != 200 {
            return Err(Error::failed(format!(
                "{}:{version} is not in the registry (GET {url} answered {})",
                settings.name(),
                response.status
            )));
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&response.body)));
        if names::digest(version) && digest != version {
            return Err(Error::failed(format!(
                "the manifest {url} does not match its digest: asked for {version}, got {digest}"
            )));
        }
        let manifest: Manifest = serde_json::from_slice(&response.body)
            .map_err(|e| Error::failed(format!("the manifest {url} is not valid: {e}")))?;
        if let Some(kind) = manifest
            .media_type
            .as_deref()
            .filter(|t| t.contains("index") || t.contains("list"))
        {
            return Err(Error::failed(format!(
                "{}:{version} is an index of several manifests ({kind}), not one artifact",
                settings.name()
            )));
        }
        let dest = Path::new(destination);
        let result = pull_layers(&registry, &settings, &manifest, dest);
        let _ = fs::remove_file(dest.join(DOWNLOAD));
        let files = result?;
        log::info(format!(
            "pulled {}@{digest}: {files} files",
            settings.name()
        ));
        let annotation = |key: &str| manifest.annotations.get(key).cloned();
        Ok(Version {
            id: version.to_owned(),
            created: annotation("org.opencontainers.image.created")
                .and_then(|t| units::rfc3339(&t)),
            commit: annotation("org.opencontainers.image.revision"),
            branch: None,
            tags: Vec::new(),
            metadata: vec![
                ("repository".to_owned(), settings.name()),
                ("digest".to_owned(), digest),
            ],
        })
    }
}

/// The digest of the manifest `tag` names, as the registry computes it.
fn manifest_digest(registry: &Registry, tag: &str) -> Result<String, Error> {
    let url = registry.url(&format!("manifests/{tag}"));
    let head = registry.document("HEAD", &url, Some(MANIFEST_TYPES))?;
    let told = head
        .headers
        .get("docker-content-digest")
        .filter(|d| head.status == 200 && names::digest(d));
    if let Some(digest) = told {
        return Ok(digest.to_owned());
    }
    let response = registry.document("GET", &url, Some(MANIFEST_TYPES))?;
    if response.status != 200 {
        return Err(Error::failed(format!(
            "GET {url} answered {}",
            response.status
        )));
    }
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(&response.body))
    ))
}

/// Pulls every titled layer into `dest`, each checked against its digest and size before it
/// takes its name. Returns how many.
fn pull_layers(
    registry: &Registry,
    settings: &Settings,
    manifest: &Manifest,
    dest: &Path,
) -> Result<usize, Error> {
    let mut total: u64 = 0;
    let mut titled = Vec::new();
    for layer in &manifest.layers {
        if !names::digest(&layer.digest) {
            return Err(Error::failed(format!(
                "layer digest `{}` is not a sha256 digest",
                layer.digest.escape_debug()
            )));
        }
        let Some(title) = layer.annotations.get(TITLE) else {
            log::warn(format!("layer {} has no {TITLE}: skipped", layer.digest));
            continue;
        };
        names::title(title).map_err(Error::failed)?;
        total = total.saturating_add(layer.size);
        if total > settings.max_size.0 {
            return Err(Error::failed(format!(
                "the layers add up to more than `max-size` ({})",
                settings.max_size
            )));
        }
        titled.push((title, layer));
    }
    if titled.is_empty() {
        return Err(Error::failed(format!(
            "no layer has an {TITLE} annotation, so none has a file name: push files as ORAS \
             does (`oras push`, `sluice plugin push`)"
        )));
    }
    let aside = dest.join(DOWNLOAD);
    for (title, layer) in &titled {
        let url = registry.url(&format!("blobs/{}", layer.digest));
        let file = File::create(&aside)
            .map_err(|e| Error::failed(format!("cannot write {}: {e}", aside.display())))?;
        let mut sink = Hashing {
            file: io::BufWriter::new(file),
            hash: Sha256::new(),
        };
        let head = registry.download(&url, &mut sink, layer.size)?;
        sink.file
            .flush()
            .map_err(|e| Error::failed(format!("cannot write {}: {e}", aside.display())))?;
        if head.status != 200 {
            return Err(Error::failed(format!("GET {url} answered {}", head.status)));
        }
        let got = format!("sha256:{}", hex::encode(sink.hash.finalize()));
        if got != layer.digest || head.body_bytes != layer.size {
            return Err(Error::failed(format!(
                "layer `{title}` does not match its manifest: expected {} ({} bytes), got {got} \
                 ({} bytes)",
                layer.digest, layer.size, head.body_bytes
            )));
        }
        let target = dest.join(title);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::failed(format!("cannot create {}: {e}", parent.display())))?;
        }
        fs::rename(&aside, &target)
            .map_err(|e| Error::failed(format!("cannot write {title}: {e}")))?;
    }
    Ok(titled.len())
}

/// Writes to a file and hashes what it writes.
struct Hashing {
    file: io::BufWriter<File>,
    hash: Sha256,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

sluice_plugin_sdk::export_artifact_source!(OciSource);
