//! `dir-source`: a built-in Sluice artifact source whose versions are the sub-folders of a
//! granted directory, e.g. `builds/1.0.0`, `builds/1.1.0`.
//!
//! Versions are listed newest first: by version order (numeric parts compared as numbers, so
//! `1.10` is newer than `1.9`), then by modification time. A version folder may hold a
//! `.artifact.json` with `branch`, `commit`, `tags` and free-form `metadata`, reported with
//! the version. `fetch` copies the folder (without `.artifact.json`) into the destination.
//!
//! ```toml
//! [artifacts.site]
//! source = "dir-source"
//! config = { path = "/builds" }
//! grants.dirs = [{ host = "./builds", guest = "/builds", access = "ro" }]
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::Deserialize;
use sluice_plugin_sdk::{ArtifactSource, Config, Error, Version, log};

const META_FILE: &str = ".artifact.json";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Guest path of the directory whose sub-folders are the versions.
    path: String,
}

/// What a `.artifact.json` may say about a version.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Meta {
    branch: Option<String>,
    commit: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

struct DirSource;

impl ArtifactSource for DirSource {
    fn list_versions(config: Config) -> Result<Vec<Version>, Error> {
        let settings: Settings = config.parse()?;
        let root = Path::new(&settings.path);
        let entries = fs::read_dir(root)
            .map_err(|e| Error::failed(format!("cannot list {}: {e}", root.display())))?;
        let mut versions = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::failed(format!("cannot list {}: {e}", root.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            versions.push(describe(&entry.path(), name)?);
        }
        versions.sort_by(newest_first);
        Ok(versions)
    }

    fn fetch(config: Config, version: &str, destination: &str) -> Result<Version, Error> {
        let settings: Settings = config.parse()?;
        if version.is_empty() || version.contains('/') || version.starts_with('.') {
            return Err(Error::failed(format!(
                "`{version}` is not a version folder name"
            )));
        }
        let source = Path::new(&settings.path).join(version);
        if !source.is_dir() {
            let known = Self::list_versions(config)?
                .into_iter()
                .map(|v| v.id)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::failed(format!(
                "version `{version}` not found in {} (available: {known})",
                settings.path
            )));
        }
        let files = copy_tree(&source, Path::new(destination))
            .map_err(|e| Error::failed(format!("cannot copy {}: {e}", source.display())))?;
        log::info(format!("fetched {version}: {files} files"));
        describe(&source, version.to_owned())
    }
}

fn describe(dir: &Path, id: String) -> Result<Version, Error> {
    let created = fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let meta = match fs::read_to_string(dir.join(META_FILE)) {
        Ok(text) => serde_json::from_str::<Meta>(&text).map_err(|e| {
            Error::failed(format!("{}/{META_FILE} is not valid: {e}", dir.display()))
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Meta::default(),
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot read {}/{META_FILE}: {e}",
                dir.display()
            )));
        }
    };
    Ok(Version {
        id,
        created,
        branch: meta.branch,
        tags: meta.tags,
        commit: meta.commit,
        metadata: meta.metadata.into_iter().collect(),
    })
}

/// Newest first: higher version order first, then later creation time.
fn newest_first(a: &Version, b: &Version) -> Ordering {
    version_order(&b.id, &a.id).then(b.created.cmp(&a.created))
}

/// Compares version strings part by part, numeric parts as numbers (`1.10` > `1.9`).
fn version_order(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| {
        let mut out = Vec::new();
        let mut current = String::new();
        for c in s.chars() {
            if current.chars().next().is_some_and(|d| d.is_ascii_digit()) != c.is_ascii_digit()
                && !current.is_empty()
            {
                out.push(std::mem::take(&mut current));
            }
            current.push(c);
        }
        out.push(current);
        out
    };
    for (x, y) in parts(a).iter().zip(parts(b).iter()) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    parts(a).len().cmp(&parts(b).len())
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<usize> {
    fs::create_dir_all(to)?;
    let mut files = 0;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == META_FILE {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files += copy_tree(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            fs::copy(entry.path(), to.join(&name))?;
            files += 1;
        }
    }
    Ok(files)
}

sluice_plugin_sdk::export_artifact_source!(DirSource);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_parts_compare_as_numbers() {
        assert_eq!(version_order("1.10.0", "1.9.3"), Ordering::Greater);
        assert_eq!(version_order("2", "10"), Ordering::Less);
        assert_eq!(version_order("1.0", "1.0"), Ordering::Equal);
        assert_eq!(version_order("1.0.1", "1.0"), Ordering::Greater);
        assert_eq!(version_order("build-7", "build-12"), Ordering::Less);
    }
}
