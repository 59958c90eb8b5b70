//! What an agent grants a step: only host directories under its operator's `--allow-dir`
//! list (or inside the job's own workspace) — none by default, whatever the pipeline asks —,
//! environment variables from the agent's own environment (never its token or the secret
//! key), the hosts the pipeline names.

use std::path::{Path, PathBuf};

use crate::pipeline::real;
use crate::types::Grants;
use crate::types::job::GrantCall;

/// The environment variables no grant reaches on an agent.
pub const NEVER_GRANTED: [&str; 2] = ["SLUICE_AGENT_TOKEN", crate::secrets::KEY_ENV];

/// Where an agent may grant directories.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// `--allow-dir`, resolved.
    pub dirs: Vec<PathBuf>,
    /// The agent's work directory: never granted, except a job's own workspace.
    pub work_dir: PathBuf,
}

impl Allowed {
    /// `dirs` and `work_dir` resolved (symlinks too), as grants are checked against them.
    pub fn new(dirs: &[PathBuf], work_dir: &Path) -> Self {
        Self {
            dirs: dirs.iter().map(|d| real(d)).collect(),
            work_dir: real(work_dir),
        }
    }

    /// Checks one host path (already resolved): under an allowed directory or inside
    /// `workspace`, never elsewhere in the work directory.
    fn check(&self, host: &str, workspace: &Path) -> Result<PathBuf, String> {
        let path = Path::new(host);
        if !path.is_absolute() {
            return Err(format!(
                "directory grant `{}` is not an absolute path",
                crate::types::escape(host)
            ));
        }
        let resolved = real(path);
        let workspace = real(workspace);
        if resolved.starts_with(&workspace) {
            return Ok(resolved);
        }
        let allowed = !resolved.starts_with(&self.work_dir)
            && self.dirs.iter().any(|d| resolved.starts_with(d));
        if allowed {
            return Ok(resolved);
        }
        let offered = if self.dirs.is_empty() {
            "this agent offers no directory".to_owned()
        } else {
            let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
            format!("this agent offers: {}", dirs.join(", "))
        };
        Err(format!(
            "directory grant `{}` is outside this agent's --allow-dir ({offered}); its \
             operator must start it with --allow-dir for it, or the stage must not ask for it",
            crate::types::escape(host)
        ))
    }

    /// The grants of `call`, with `$(sluice.workspace)` as `workspace` (mounted at
    /// `/workspace` when the call asks for it).
    pub fn grants(&self, call: &GrantCall, workspace: &Path) -> Result<Grants, String> {
        let mut grants = Grants::none();
        let shown = workspace.display().to_string();
        for dir in &call.dirs {
            let host = dir.host.replace("$(sluice.workspace)", &shown);
            let host = self.check(&host, workspace)?;
            if dir.access == crate::types::Access::ReadWrite && !host.exists() {
                std::fs::create_dir_all(&host).map_err(|e| {
                    format!("cannot create granted directory {}: {e}", host.display())
                })?;
            }
            grants = grants
                .dir(&host, dir.guest.clone(), dir.access)
                .map_err(|e| e.to_string())?;
        }
        for name in &call.env {
            if NEVER_GRANTED.contains(&name.as_str()) {
                return Err(format!(
                    "environment variable {name} is the agent's credential and is never granted"
                ));
            }
            let value = std::env::var(name).map_err(|_| {
                format!("environment variable {name} is granted but not set on this agent")
            })?;
            grants = grants.env(name.clone(), value);
        }
        for host in &call.hosts {
            grants = grants.host(host.clone()).map_err(|e| e.to_string())?;
        }
        if let Some(access) = call.workspace {
            std::fs::create_dir_all(workspace)
                .map_err(|e| format!("cannot create workspace {}: {e}", workspace.display()))?;
            grants = grants
                .dir(workspace, "/workspace".to_owned(), access)
                .map_err(|e| e.to_string())?;
        }
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Access;
    use crate::types::job::DirCall;

    #[test]
    fn only_allowed_directories_and_the_workspace_are_granted() {
        let root = tempfile::tempdir().unwrap();
        let offered = root.path().join("offered");
        let work = root.path().join("work");
        let workspace = work.join("jobs").join("r-1.prod.1");
        std::fs::create_dir_all(&offered).unwrap();
        std::fs::create_dir_all(&workspace).unwrap();
        let allowed = Allowed::new(std::slice::from_ref(&offered), &work);
        let call = |host: &str| GrantCall {
            dirs: vec![DirCall {
                host: host.into(),
                guest: "/d".into(),
                access: Access::ReadOnly,
            }],
            ..GrantCall::default()
        };
        let ok = |host: &str| allowed.grants(&call(host), &workspace);
        assert!(ok(&offered.display().to_string()).is_ok());
        assert!(ok("$(sluice.workspace)/out").is_ok());
        for refused in [
            "/etc".to_owned(),
            format!("{}/../../etc", offered.display()),
            work.display().to_string(),
            work.join("plugins").display().to_string(),
            "relative".to_owned(),
        ] {
            let e = ok(&refused).unwrap_err();
            assert!(
                e.contains("outside this agent's --allow-dir") || e.contains("not an absolute"),
                "{refused}: {e}"
            );
        }
        // A symlink inside an offered directory that leads out of it is refused.
        std::os::unix::fs::symlink("/etc", offered.join("out")).unwrap();
        assert!(ok(&offered.join("out").display().to_string()).is_err());
        let env = GrantCall {
            env: vec!["SLUICE_AGENT_TOKEN".into()],
            ..GrantCall::default()
        };
        let e = allowed.grants(&env, &workspace).unwrap_err();
        assert!(e.contains("never granted"), "{e}");
    }
}
