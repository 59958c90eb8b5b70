//! `copy`: a built-in Sluice task that copies files from the deployment's workspace into a
//! granted target directory, filtered by include/exclude globs.
//!
//! Each file is written aside (`.name.sluice-tmp`) and renamed into place, so a reader of the
//! target never sees a half-written file. Files whose content is already identical are left
//! alone; with `mirror = true`, files in the target that the source no longer has are removed.
//! The task reports what changed as log lines and output variables.
//!
//! ```toml
//! [[stages.tasks]]
//! plugin = "copy"
//! config = { from = "site", to = "/target", include = ["**/*.html"], exclude = ["drafts/**"] }
//! grants.dirs = [{ host = "/srv/www/dev", guest = "/target", access = "rw" }]
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::Deserialize;
use sluice_plugin_sdk::files::{self, Filter};
use sluice_plugin_sdk::{Error, Report, Task, TaskInput, log};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Source directory: relative to the workspace, or an absolute guest path.
    from: String,
    /// Target directory: a guest path inside a read-write grant.
    to: String,
    /// Globs (relative to `from`) of the files to copy; everything by default.
    #[serde(default = "everything")]
    include: Vec<String>,
    /// Globs of files to leave out, applied after `include`.
    #[serde(default)]
    exclude: Vec<String>,
    /// Remove files from the target that match `include` but are no longer in the source.
    #[serde(default)]
    mirror: bool,
}

fn everything() -> Vec<String> {
    vec!["**".to_owned()]
}

/// What one run changed.
#[derive(Default)]
struct Changes {
    added: Vec<String>,
    updated: Vec<String>,
    unchanged: usize,
    removed: Vec<String>,
}

struct Copy;

impl Task for Copy {
    fn run(input: TaskInput) -> Result<Report, Error> {
        let config: Config = input.config.parse()?;
        let from = files::source_dir("from", &config.from, &input.context)?;
        let to = files::target_dir("to", &config.to)?;
        let filter = Filter::new(&config.include, &config.exclude)?;

        let mut sources = files::walk(&from)
            .map_err(|e| Error::failed(format!("cannot read source {}: {e}", from.display())))?;
        sources.retain(|rel| filter.matches(rel));

        let mut changes = Changes::default();
        for (i, rel) in sources.iter().enumerate() {
            copy_one(&from.join(rel), &to.join(rel), rel, &mut changes)?;
            log::progress(((i + 1) * 100 / sources.len()) as u8, rel);
        }
        if config.mirror {
            let keep: BTreeSet<&str> = sources.iter().map(String::as_str).collect();
            let existing = files::walk(&to)
                .map_err(|e| Error::failed(format!("cannot read target {}: {e}", to.display())))?;
            for rel in existing
                .iter()
                .filter(|r| filter.matches(r) && !keep.contains(r.as_str()))
            {
                fs::remove_file(to.join(rel))
                    .map_err(|e| Error::failed(format!("cannot remove {rel}: {e}")))?;
                log::info(format!("removed {rel}"));
                changes.removed.push(rel.clone());
            }
        }

        let summary = format!(
            "{} added, {} updated, {} unchanged, {} removed",
            changes.added.len(),
            changes.updated.len(),
            changes.unchanged,
            changes.removed.len()
        );
        log::info(&summary);
        let mut report = Report::new()
            .output("files-added", changes.added.len().to_string())
            .output("files-updated", changes.updated.len().to_string())
            .output("files-unchanged", changes.unchanged.to_string())
            .output("files-removed", changes.removed.len().to_string())
            .output("summary", summary);
        if sources.is_empty() {
            report = report.warn(format!(
                "no file under {} matched include {:?} and exclude {:?}",
                from.display(),
                config.include,
                config.exclude
            ));
        }
        Ok(report)
    }
}

/// Copies one file unless the target already has the same content: written aside, then renamed.
fn copy_one(src: &Path, dst: &Path, rel: &str, changes: &mut Changes) -> Result<(), Error> {
    let content = fs::read(src).map_err(|e| Error::failed(format!("cannot read {rel}: {e}")))?;
    let existing = fs::read(dst).ok();
    if existing.as_deref() == Some(content.as_slice()) {
        changes.unchanged += 1;
        return Ok(());
    }
    files::write_atomic(dst, &content)
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", dst.display())))?;
    if existing.is_some() {
        log::info(format!("updated {rel}"));
        changes.updated.push(rel.to_owned());
    } else {
        log::info(format!("added {rel}"));
        changes.added.push(rel.to_owned());
    }
    Ok(())
}

sluice_plugin_sdk::export_task!(Copy);
