//! `http-source`: a built-in Sluice artifact source whose versions are listed in a JSON index
//! at a URL (the schema is in [`index`]) and downloaded over HTTP as a `.tar.gz`, `.tar`,
//! `.zip` or a single file.
//!
//! A download is streamed to a file beside the destination while its SHA-256 is computed; a
//! digest that differs from the index's, or a size past the index's or `max-size`, refuses
//! the version. Archives are checked entry by entry before anything is unpacked (see
//! [`unpack`]): nothing may land outside the destination.
//!
//! ```toml
//! [artifacts.site]
//! source = "http-source"
//! config = { index = "https://builds.example.com/site/index.json", headers = { authorization = "Bearer $(builds-token)" } }
//! grants.hosts = ["builds.example.com"]
//! ```

mod index;
mod unpack;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sluice_plugin_sdk::http::{self, HttpError, Request};
use sluice_plugin_sdk::units::{Bytes, Duration};
use sluice_plugin_sdk::{ArtifactSource, Config, Error, Version, log};

use crate::index::{Entry, Format, Index};
use crate::unpack::Limits;

/// The largest index read.
const INDEX_LIMIT: usize = 16 << 20;
/// Where a download is written before it is checked.
const DOWNLOAD: &str = ".download.sluice-tmp";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    /// URL of the JSON index.
    index: String,
    /// Headers sent with every request (the index and the downloads), e.g. `authorization`.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The largest download.
    #[serde(default = "max_size")]
    max_size: Bytes,
    /// The most an archive may unpack to.
    #[serde(default = "max_unpacked")]
    max_unpacked: Bytes,
    /// The most entries an archive may have.
    #[serde(default = "max_files")]
    max_files: u64,
    /// Bounds connecting and each wait for data, per request.
    #[serde(default = "timeout")]
    timeout: Duration,
}

fn max_size() -> Bytes {
    Bytes(1 << 30)
}
fn max_unpacked() -> Bytes {
    Bytes(4 << 30)
}
fn max_files() -> u64 {
    100_000
}
fn timeout() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}

impl Settings {
    fn request(&self, url: &str) -> Request {
        let mut request = Request::new("GET", url)
            .timeout(self.timeout.0)
            .follow_redirects(http::MAX_REDIRECTS);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
    }

    fn index(&self) -> Result<Index, Error> {
        let response = self
            .request(&self.index)
            .send(INDEX_LIMIT)
            .map_err(|e| fetch_error("the index", &self.index, &e))?;
        if response.status != 200 {
            return Err(Error::failed(format!(
                "GET {} answered {}: expected 200 and the JSON index",
                self.index, response.status
            )));
        }
        let index: Index = serde_json::from_slice(&response.body)
            .map_err(|e| Error::failed(format!("the index at {} is not valid: {e}", self.index)))?;
        let mut seen = std::collections::BTreeSet::new();
        for entry in &index.versions {
            if !seen.insert(entry.id.as_str()) {
                return Err(Error::failed(format!(
                    "the index at {} lists version `{}` twice",
                    self.index, entry.id
                )));
            }
            entry.digest().map_err(Error::failed)?;
        }
        Ok(index)
    }
}

fn fetch_error(what: &str, url: &str, e: &HttpError) -> Error {
    Error::failed(format!("cannot fetch {what} {url}: {e}"))
}

fn describe(entry: &Entry, url: &str) -> Result<Version, Error> {
    let created = entry
        .created
        .as_ref()
        .map(|c| c.seconds())
        .transpose()
        .map_err(|e| Error::failed(format!("version `{}`: {e}", entry.id)))?;
    let digest = entry.digest().map_err(Error::failed)?;
    let mut metadata = vec![
        ("pin".to_owned(), format!("{}@sha256:{digest}", entry.id)),
        ("sha256".to_owned(), digest),
        ("url".to_owned(), url.to_owned()),
    ];
    if let Some(size) = entry.size {
        metadata.push(("size".to_owned(), size.to_string()));
    }
    Ok(Version {
        id: entry.id.clone(),
        created,
        branch: entry.branch.clone(),
        tags: entry.tags.clone(),
        commit: entry.commit.clone(),
        metadata,
    })
}

struct HttpSource;

impl ArtifactSource for HttpSource {
    fn list_versions(config: Config) -> Result<Vec<Version>, Error> {
        let settings: Settings = config.parse()?;
        let index = settings.index()?;
        let mut versions = index
            .versions
            .iter()
            .map(|entry| {
                let url = http::join(&settings.index, &entry.url).map_err(Error::failed)?;
                describe(entry, &url)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        // Newest first; versions with no time after, in the index's order.
        versions.sort_by_key(|v| std::cmp::Reverse(v.created));
        Ok(versions)
    }

    fn fetch(config: Config, version: &str, destination: &str) -> Result<Version, Error> {
        let settings: Settings = config.parse()?;
        // A release fetches its version's pin, `ID@sha256:HEX`: the bytes it was created with.
        let (version, pinned) = match version.rsplit_once("@sha256:") {
            Some((id, digest)) => (id, Some(digest.to_ascii_lowercase())),
            None => (version, None),
        };
        let index = settings.index()?;
        let Some(entry) = index.versions.iter().find(|e| e.id == version) else {
            let known: Vec<&str> = index.versions.iter().map(|e| e.id.as_str()).collect();
            return Err(Error::failed(format!(
                "version `{version}` is not in the index at {} (it lists: {})",
                settings.index,
                known.join(", ")
            )));
        };
        let url = http::join(&settings.index, &entry.url).map_err(Error::failed)?;
        let mut described = describe(entry, &url)?;
        let limit = match entry.size {
            Some(size) if size > settings.max_size.0 => {
                return Err(Error::failed(format!(
                    "version `{version}` is {size} bytes, over `max-size` ({})",
                    settings.max_size
                )));
            }
            Some(size) => size,
            None => settings.max_size.0,
        };

        let dest = Path::new(destination);
        let download = dest.join(DOWNLOAD);
        let listed = entry.digest().map_err(Error::failed)?;
        if let Some(pinned) = pinned.as_ref().filter(|p| **p != listed) {
            return Err(Error::failed(format!(
                "version `{version}` changed in the index since the release was created: it was \
                 sha256:{pinned}, the index now says sha256:{listed} (create a new release)"
            )));
        }
        let result = download_to(&settings, &url, &download, limit).and_then(|(digest, bytes)| {
            let expected = listed.clone();
            if digest != expected {
                return Err(Error::failed(format!(
                    "{url} does not match its digest: the index says sha256:{expected}, the \
                     download is sha256:{digest}"
                )));
            }
            if entry.size.is_some_and(|size| size != bytes) {
                return Err(Error::failed(format!(
                    "{url} is {bytes} bytes, the index says {}",
                    entry.size.unwrap_or_default()
                )));
            }
            let format = entry.format.unwrap_or_else(|| Format::of(&entry.url));
            place(format, &download, dest, &url, &settings, &mut described)
        });
        let _ = fs::remove_file(&download);
        result?;
        Ok(described)
    }
}

/// Streams `url` into `path`, returning its SHA-256 (hex) and size.
fn download_to(
    settings: &Settings,
    url: &str,
    path: &Path,
    limit: u64,
) -> Result<(String, u64), Error> {
    let file = File::create(path)
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))?;
    let mut sink = Hashing {
        file: io::BufWriter::new(file),
        hash: Sha256::new(),
    };
    let head = settings
        .request(url)
        .send_into(&mut sink, limit)
        .map_err(|e| match e {
            HttpError::TooLarge { limit } => Error::failed(format!(
                "{url} is larger than {limit} bytes (the index's `size` or `max-size`)"
            )),
            other => fetch_error("the artifact", url, &other),
        })?;
    if head.status != 200 {
        return Err(Error::failed(format!("GET {url} answered {}", head.status)));
    }
    sink.file
        .flush()
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))?;
    log::info(format!("downloaded {url} ({} bytes)", head.body_bytes));
    Ok((hex::encode(sink.hash.finalize()), head.body_bytes))
}

/// Puts a verified download in place: unpacked, or as one file under its URL's name.
fn place(
    format: Format,
    download: &Path,
    dest: &Path,
    url: &str,
    settings: &Settings,
    described: &mut Version,
) -> Result<(), Error> {
    if format == Format::File {
        let name = http::Url::parse(url)
            .ok()
            .map(|u| u.file_name().to_owned())
            .filter(|n| !n.is_empty() && !n.starts_with('.'))
            .unwrap_or_else(|| "artifact".to_owned());
        fs::rename(download, dest.join(&name))
            .map_err(|e| Error::failed(format!("cannot write {name}: {e}")))?;
        return Ok(());
    }
    let limits = Limits {
        max_bytes: settings.max_unpacked.0,
        max_files: settings.max_files,
    };
    let unpacked = unpack::unpack(format, download, dest, limits).map_err(|e| {
        // Nothing of a refused archive is left half-unpacked for a task to find.
        clear(dest);
        Error::failed(format!("{url}: {e}"))
    })?;
    log::info(format!(
        "unpacked {} files, {} bytes",
        unpacked.files, unpacked.bytes
    ));
    described
        .metadata
        .push(("files".to_owned(), unpacked.files.to_string()));
    Ok(())
}

/// Removes everything in `dir` but the download being handled.
fn clear(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() == DOWNLOAD {
            continue;
        }
        let path = entry.path();
        let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
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

sluice_plugin_sdk::export_artifact_source!(HttpSource);
