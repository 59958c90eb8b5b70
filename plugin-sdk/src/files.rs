//! Files in the sandbox: where a task's paths point, which files a glob filter picks, and
//! writing a file so that no reader ever sees it half-written.
//!
//! ```no_run
//! use sluice_plugin_sdk::files::{self, Filter};
//! # fn demo(context: &sluice_plugin_sdk::Context) -> Result<(), sluice_plugin_sdk::Error> {
//! let from = files::source_dir("from", "site", context)?;
//! let to = files::target_dir("to", "/target")?;
//! let filter = Filter::new(&["**/*.html".into()], &["drafts/**".into()])?;
//! for rel in files::walk(&from).map_err(sluice_plugin_sdk::Error::failed)? {
//!     if filter.matches(&rel) {
//!         let page = std::fs::read(from.join(&rel)).map_err(sluice_plugin_sdk::Error::failed)?;
//!         files::write_atomic(&to.join(&rel), &page).map_err(sluice_plugin_sdk::Error::failed)?;
//!     }
//! }
//! # Ok(()) }
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{Context, Error};

/// The suffix of files being written aside; [`walk`] skips them.
const ASIDE: &str = ".sluice-tmp";

/// A source directory from a config field: an absolute guest path, or a path relative to the
/// deployment's workspace.
pub fn source_dir(field: &str, value: &str, context: &Context) -> Result<PathBuf, Error> {
    if Path::new(value).is_absolute() {
        return Ok(PathBuf::from(value));
    }
    match &context.workspace {
        Some(workspace) => Ok(Path::new(workspace).join(value)),
        None => Err(Error::invalid_config(format!(
            "`{field} = \"{value}\"` is relative but the task has no workspace: \
             use an absolute guest path or grant the workspace"
        ))),
    }
}

/// A target directory from a config field: it must be an absolute guest path (inside a
/// read-write grant, which the sandbox enforces).
pub fn target_dir(field: &str, value: &str) -> Result<PathBuf, Error> {
    if Path::new(value).is_absolute() {
        Ok(PathBuf::from(value))
    } else {
        Err(Error::invalid_config(format!(
            "`{field} = \"{value}\"` must be an absolute guest path inside a read-write grant"
        )))
    }
}

/// The files under `dir`, as sorted `/`-separated paths relative to it. Directories are
/// walked, files listed; anything else (and files being written aside) is skipped.
pub fn walk(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    walk_into(dir, "", &mut out)?;
    Ok(out)
}

fn walk_into(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    let mut entries = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(ASIDE) {
            continue;
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk_into(&entry.path(), &rel, out)?;
        } else if kind.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

/// Writes `content` to `path`: to a file beside it first, then renamed into place, so a reader
/// sees the old content or the new, never a part. Parent directories are created.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    let aside = aside(path)?;
    fs::write(&aside, content)
        .and_then(|()| fs::rename(&aside, path))
        .inspect_err(|_| {
            let _ = fs::remove_file(&aside);
        })
}

/// Where `path` is written before it is renamed into place (its parent is created): a dotted
/// name beside it that [`walk`] skips.
pub fn aside(path: &Path) -> io::Result<PathBuf> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(parent)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    Ok(parent.join(format!(".{name}{ASIDE}")))
}

/// Include and exclude globs over `/`-separated relative paths (`**` crosses directories).
#[derive(Debug, Clone)]
pub struct Filter {
    include: GlobSet,
    exclude: GlobSet,
}

impl Filter {
    /// A filter picking what matches an `include` glob and no `exclude` glob. A bad glob is a
    /// configuration error naming it.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, Error> {
        Ok(Self {
            include: globs("include", include)?,
            exclude: globs("exclude", exclude)?,
        })
    }

    /// A filter over one list of globs, reported under `field` when one is bad.
    pub fn any_of(field: &str, patterns: &[String]) -> Result<Self, Error> {
        Ok(Self {
            include: globs(field, patterns)?,
            exclude: GlobSet::empty(),
        })
    }

    /// Whether `rel` is picked.
    pub fn matches(&self, rel: &str) -> bool {
        self.include.is_match(rel) && !self.exclude.is_match(rel)
    }
}

fn globs(field: &str, patterns: &[String]) -> Result<GlobSet, Error> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern)
            .map_err(|e| Error::invalid_config(format!("`{field}` pattern `{pattern}`: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| Error::invalid_config(format!("`{field}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_include_then_exclude() {
        let filter = Filter::new(&["**/*.json".into()], &["secret/**".into()]).unwrap();
        assert!(filter.matches("a.json"));
        assert!(filter.matches("config/app.json"));
        assert!(!filter.matches("secret/app.json"));
        assert!(!filter.matches("a.yaml"));
        let err = Filter::any_of("transform", &["a[".into()]).unwrap_err();
        assert!(
            err.to_string().contains("`transform` pattern `a[`"),
            "{err}"
        );
    }

    #[test]
    fn walks_sorted_and_writes_aside_then_renames() {
        let dir = tempdir();
        write_atomic(&dir.join("b/c.txt"), b"c").unwrap();
        write_atomic(&dir.join("a.txt"), b"a").unwrap();
        fs::write(dir.join(".x.sluice-tmp"), b"half").unwrap();
        assert_eq!(walk(&dir).unwrap(), ["a.txt", "b/c.txt"]);
        write_atomic(&dir.join("a.txt"), b"again").unwrap();
        assert_eq!(fs::read(dir.join("a.txt")).unwrap(), b"again");
        assert!(!dir.join("b/.c.txt.sluice-tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-sdk-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
