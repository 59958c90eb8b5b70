//! {{name}}: a Sluice artifact source. Versions are the directories under `root` (a granted
//! directory, e.g. builds/1.0.0, builds/1.1.0); fetching a version copies its files.

use std::path::Path;

use serde::Deserialize;
use sluice_plugin_sdk::{ArtifactSource, Config, Error, Version, log};

/// The source's configuration: what the pipeline writes under the artifact's `config`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// A guest path of a granted directory holding one directory per version.
    root: String,
}

/// The plugin's logic, kept free of I/O so that the tests below can check it: version names,
/// newest first (numeric parts compare as numbers, so 1.10.0 comes before 1.9.0).
pub fn newest_first(mut names: Vec<String>) -> Vec<String> {
    fn key(name: &str) -> Vec<(u8, u64, String)> {
        name.split(['.', '-'])
            .map(|p| match p.parse::<u64>() {
                Ok(n) => (1, n, String::new()),
                Err(_) => (0, 0, p.to_owned()),
            })
            .collect()
    }
    names.sort_by_key(|name| std::cmp::Reverse(key(name)));
    names
}

fn versions(root: &str) -> Result<Vec<String>, Error> {
    let entries = std::fs::read_dir(root).map_err(|e| {
        Error::failed(format!(
            "cannot list {root}: {e} (is it granted to the source?)"
        ))
    })?;
    let mut names = Vec::new();
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(newest_first(names))
}

fn copy(from: &Path, to: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut count = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            count += copy(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
            count += 1;
        }
    }
    Ok(count)
}

struct Folders;

impl ArtifactSource for Folders {
    fn list_versions(config: Config) -> Result<Vec<Version>, Error> {
        let settings: Settings = config.parse()?;
        Ok(versions(&settings.root)?
            .into_iter()
            .map(|id| Version {
                id,
                created: None,
                branch: None,
                tags: vec![],
                commit: None,
                metadata: vec![],
            })
            .collect())
    }

    fn fetch(config: Config, version: &str, destination: &str) -> Result<Version, Error> {
        let settings: Settings = config.parse()?;
        if !versions(&settings.root)?.iter().any(|v| v == version) {
            return Err(Error::failed(format!(
                "there is no version {version:?} under {}",
                settings.root
            )));
        }
        let from = Path::new(&settings.root).join(version);
        let count = copy(&from, Path::new(destination))
            .map_err(|e| Error::failed(format!("cannot copy {}: {e}", from.display())))?;
        log::info(format!("fetched {version} ({count} files)"));
        Ok(Version {
            id: version.to_owned(),
            created: None,
            branch: None,
            tags: vec![],
            commit: None,
            metadata: vec![("files".to_owned(), count.to_string())],
        })
    }
}

sluice_plugin_sdk::export_artifact_source!(Folders);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_versions_newest_first_numerically() {
        let names = ["1.9.0", "1.10.0", "0.2.0"].map(String::from).to_vec();
        assert_eq!(newest_first(names), ["1.10.0", "1.9.0", "0.2.0"]);
    }
}
