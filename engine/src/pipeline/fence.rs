//! The data directory is never granted. It holds the store, the workspaces, the compiled
//! plugins and the cache's key: a task that could write there could forge what the engine
//! runs or records. A directory grant whose host path equals, contains or lies inside the data
//! directory is refused — when a pipeline is validated (`check_grants`, with the data
//! directory of the engine that checks it) and again when a call's grants are resolved
//! ([`Fence::check`], which also sees paths built from variables and task outputs). The one
//! place under the data directory a task may be granted is its own deployment's workspace.
//!
//! Paths are compared after taking out `.` and `..` and resolving symlinks in the part that
//! exists, so neither `$(sluice.pipeline-dir)/../x` nor a symlink can hide the data directory.

use std::path::{Component, Path, PathBuf};

use super::{Diagnostic, Loaded, PipelineError};

/// Refuses grants that reach the data directory.
#[derive(Debug, Clone)]
pub struct Fence {
    data_dir: PathBuf,
    workspace: Option<PathBuf>,
}

impl Fence {
    /// A fence around `data_dir`, with a gap for `workspace` (a deployment's own) if given.
    pub fn new(data_dir: &Path, workspace: Option<&Path>) -> Self {
        Self {
            data_dir: real(data_dir),
            workspace: workspace.map(real),
        }
    }

    /// The same fence, with a gap for `workspace` (a deployment's own); the data directory
    /// is not resolved again.
    pub fn with_workspace(&self, workspace: &Path) -> Self {
        Self {
            data_dir: self.data_dir.clone(),
            workspace: Some(real(workspace)),
        }
    }

    /// Whether a directory grant of `host` (resolved) may be made; the error says why not.
    pub fn check(&self, host: &str) -> Result<(), String> {
        let path = real(Path::new(host));
        let inside_workspace = self.workspace.as_ref().is_some_and(|w| path.starts_with(w));
        if (path.starts_with(&self.data_dir) || self.data_dir.starts_with(&path))
            && !inside_workspace
        {
            return Err(format!(
                "directory grant `{host}` ({}) overlaps the data directory {}: the data \
                 directory holds the store and the compiled plugins and is never granted; grant \
                 a directory outside it, e.g. under `$(sluice.pipeline-dir)`, or the workspace",
                path.display(),
                self.data_dir.display()
            ));
        }
        Ok(())
    }
}

/// Checks every directory grant of the pipeline that can be resolved now (the ones that
/// need only `$(sluice.pipeline-dir)` and `$(sluice.data-dir)`) against the data directory.
pub fn check_grants(loaded: &Loaded, data_dir: &Path) -> Result<(), PipelineError> {
    let plan = &loaded.plan;
    let fence = Fence::new(data_dir, None);
    let data = data_dir.display().to_string();
    let mut diagnostics = Vec::new();
    let mut check = |grants: &super::GrantSpec, at: Option<&super::Location>, what: String| {
        for dir in &grants.dirs {
            let host = dir
                .host
                .replace("$(sluice.pipeline-dir)", &plan.dir)
                .replace("$(sluice.data-dir)", &data);
            if host.contains("$(") {
                continue; // resolved, and checked, when the call runs
            }
            if let Err(message) = fence.check(&host) {
                diagnostics.push(Diagnostic {
                    message: format!("{what}: {message}"),
                    at: at.cloned(),
                    help: Some("grant a directory outside the data directory".into()),
                });
            }
        }
    };
    for artifact in &plan.artifacts {
        let at = loaded.locations.artifacts.get(&artifact.alias);
        check(
            &artifact.grants,
            at,
            format!("artifact `{}`", artifact.alias),
        );
    }
    for stage in &plan.stages {
        for (index, task) in stage.tasks.iter().enumerate() {
            let at = loaded.locations.tasks.get(&(stage.name.clone(), index));
            let what = format!("task `{}` (stage `{}`)", task.name, stage.name);
            check(&task.grants, at, what);
        }
        for gate in [&stage.pre_gates, &stage.post_gates]
            .into_iter()
            .flatten()
            .flat_map(|g| &g.gates)
        {
            let at = loaded
                .locations
                .gates
                .get(&(stage.name.clone(), gate.name.clone()));
            let what = format!("gate `{}` (stage `{}`)", gate.name, stage.name);
            check(&gate.grants, at, what);
        }
    }
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(PipelineError { diagnostics })
    }
}

/// `path` made absolute, `.` and `..` taken out, and symlinks resolved in its longest
/// existing prefix (the rest appended as written).
pub fn real(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut normal = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    let mut rest = Vec::new();
    let mut prefix = normal.as_path();
    loop {
        if let Ok(resolved) = std::fs::canonicalize(prefix) {
            let mut out = resolved;
            out.extend(rest.iter().rev());
            return out;
        }
        match (prefix.parent(), prefix.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                prefix = parent;
            }
            _ => return normal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_is_fenced_however_it_is_written() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("project/.sluice");
        std::fs::create_dir_all(data.join("compiled")).unwrap();
        let fence = Fence::new(&data, None);
        let show = |p: &Path| p.display().to_string();
        for refused in [
            show(&data),
            show(&data.join("compiled")),
            show(&data.join("not/yet/there")),
            show(root.path()),
            show(&root.path().join("project")),
            show(&root.path().join("project/sites/../.sluice/compiled")),
            show(&root.path().join("project/./.sluice")),
            "/".to_owned(),
        ] {
            let err = fence.check(&refused).unwrap_err();
            assert!(
                err.contains("overlaps the data directory"),
                "{refused}: {err}"
            );
        }
        for allowed in [
            show(&root.path().join("project/sites/dev")),
            show(&root.path().join("project/.sluice-other")),
            show(&root.path().join("elsewhere")),
        ] {
            fence.check(&allowed).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_does_not_hide_the_data_directory() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("compiled")).unwrap();
        std::os::unix::fs::symlink(&data, root.path().join("innocent")).unwrap();
        let fence = Fence::new(&data, None);
        let via_link = root.path().join("innocent/compiled");
        assert!(fence.check(&via_link.display().to_string()).is_err());
    }

    #[test]
    fn only_its_own_workspace_is_granted_inside_the_data_directory() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let mine = data.join("workspaces/r-1/dev/1");
        std::fs::create_dir_all(&mine).unwrap();
        let fence = Fence::new(&data, Some(&mine));
        fence
            .check(&mine.join("out").display().to_string())
            .unwrap();
        let other = mine.join("../../../r-2/dev/1");
        assert!(fence.check(&other.display().to_string()).is_err());
        let up = mine.join("../../../../compiled");
        assert!(fence.check(&up.display().to_string()).is_err());
    }
}
