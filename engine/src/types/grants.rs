//! What a plugin may reach. A [`Grants`] starts empty — no directories, no environment
//! variables, no hosts — and each grant is added explicitly, the way the pipeline writes it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Read-only or read-write access to a granted directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read files and list directories.
    #[serde(rename = "ro")]
    ReadOnly,
    /// Also create, write, rename and remove.
    #[serde(rename = "rw")]
    ReadWrite,
}

/// A host directory made visible to the plugin at a guest path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirGrant {
    /// Absolute host path.
    pub host: PathBuf,
    /// Absolute guest path, e.g. `/workspace`.
    pub guest: String,
    /// Access mode.
    pub access: Access,
}

/// Everything a plugin call is granted. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Directories.
    pub dirs: Vec<DirGrant>,
    /// Environment variables (name, value).
    pub env: Vec<(String, String)>,
    /// Outbound HTTP hosts: `host`, `host:port` or `*.domain`.
    pub hosts: Vec<String>,
}

/// A grant that cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Host paths must be absolute, so a grant means the same wherever the engine runs.
    #[error("directory grant `{0}` is a relative path: grant an absolute path")]
    RelativeHostPath(PathBuf),
    /// Guest paths must be absolute.
    #[error("guest path `{0}` must be absolute, e.g. `/workspace`")]
    RelativeGuestPath(String),
    /// The host directory does not exist or is not a directory.
    #[error("directory grant `{path}` cannot be opened: {reason}")]
    Unopenable {
        /// The host path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A host pattern is malformed.
    #[error("host grant `{0}` is not `host`, `host:port` or `*.domain`")]
    BadHost(String),
}

impl Grants {
    /// No grants at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Grants `host` (an absolute directory) at `guest`.
    pub fn dir(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        access: Access,
    ) -> Result<Self, GrantError> {
        let host = host.into();
        let guest = guest.into();
        if !host.is_absolute() {
            return Err(GrantError::RelativeHostPath(host));
        }
        if !guest.starts_with('/') {
            return Err(GrantError::RelativeGuestPath(guest));
        }
        self.dirs.push(DirGrant {
            host,
            guest,
            access,
        });
        Ok(self)
    }

    /// Grants the environment variable `name` with `value`.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Grants outbound HTTP to `pattern`: `host`, `host:port` or `*.domain`.
    pub fn host(mut self, pattern: impl Into<String>) -> Result<Self, GrantError> {
        let pattern = pattern.into();
        validate_host(&pattern)?;
        self.hosts.push(pattern);
        Ok(self)
    }

    /// Whether outbound HTTP to `host` on `port` is granted.
    pub fn allows_host(&self, host: &str, port: u16) -> bool {
        self.hosts
            .iter()
            .any(|pattern| host_matches(pattern, host, port))
    }
}

fn validate_host(pattern: &str) -> Result<(), GrantError> {
    let bad = || GrantError::BadHost(pattern.to_owned());
    let (name, port) = split_port(pattern);
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(bad());
    }
    let name = name.strip_prefix("*.").unwrap_or(name);
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    if valid { Ok(()) } else { Err(bad()) }
}

/// Splits `host:port` (or `[v6]:port`) into the host and the optional port.
fn split_port(pattern: &str) -> (&str, Option<&str>) {
    if let Some(rest) = pattern.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((v6, tail)) => (&pattern[..v6.len() + 2], tail.strip_prefix(':')),
            None => (pattern, None),
        };
    }
    match pattern.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (pattern, None),
    }
}

fn host_matches(pattern: &str, host: &str, port: u16) -> bool {
    let (name, want_port) = split_port(pattern);
    if let Some(want) = want_port
        && want.parse::<u16>().ok() != Some(port)
    {
        return false;
    }
    let host = host.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(domain) => host.ends_with(&format!(".{domain}")),
        None => host == name,
    }
}

/// Resolves `path` against `base` unless it is absolute (for CLI flags and pipeline files).
pub fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_granted_by_default() {
        let grants = Grants::none();
        assert!(grants.dirs.is_empty() && grants.env.is_empty());
        assert!(!grants.allows_host("example.com", 443));
    }

    #[test]
    fn host_patterns() {
        let g = Grants::none()
            .host("api.example.com")
            .unwrap()
            .host("127.0.0.1:8080")
            .unwrap()
            .host("*.internal.example")
            .unwrap();
        assert!(g.allows_host("api.example.com", 443));
        assert!(g.allows_host("API.example.com", 80));
        assert!(g.allows_host("127.0.0.1", 8080));
        assert!(!g.allows_host("127.0.0.1", 8081));
        assert!(g.allows_host("db.internal.example", 5432));
        assert!(!g.allows_host("internal.example", 80));
        assert!(!g.allows_host("evil.example.com", 443));
        assert!(!g.allows_host("api.example.com.evil.net", 443));
    }

    #[test]
    fn bad_grants_are_refused() {
        assert_eq!(
            Grants::none().dir("relative/dir", "/x", Access::ReadOnly),
            Err(GrantError::RelativeHostPath("relative/dir".into()))
        );
        assert!(Grants::none().dir("/tmp", "x", Access::ReadOnly).is_err());
        assert!(Grants::none().host("bad host").is_err());
        assert!(Grants::none().host("h:99999").is_err());
    }
}
