//! `sluice.toml`: what `sluice serve` reads. Parsed strictly (unknown fields are errors), then
//! checked as a whole, every problem named with where it is and how to fix it. API tokens are
//! never stored in clear: a user has the sha256 of their token, or names the environment
//! variable that holds it (hashed as the server starts, then forgotten).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::types::Name;

mod limits;
mod pools;
mod registries;
mod streams;
mod timeouts;

pub use limits::ApiLimits;
use limits::RawLimits;
pub use pools::Pools;

/// What a user may do. Roles add up; `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Read pipelines, releases, approvals, logs and the audit trail.
    Viewer,
    /// Also create releases, deploy, cancel and abandon.
    Releaser,
    /// Also decide and reassign the approvals they are listed on.
    Approver,
    /// Everything: change pipelines, override approvals.
    Admin,
}

/// A user of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Name, as approvers list it.
    pub name: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Groups, as approvers list them (`group:NAME`).
    pub groups: Vec<String>,
}

impl User {
    /// Whether the user has `role` (admins have every role).
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&Role::Admin) || role == Role::Viewer || self.roles.contains(&role)
    }
}

/// The service configuration, checked.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The data directory (store, workspaces, compiled plugins).
    pub data_dir: PathBuf,
    /// The directory of pipeline files.
    pub pipelines: PathBuf,
    /// Users, by the sha256 (hex) of their token.
    pub tokens: BTreeMap<String, User>,
    /// Limits.
    pub limits: ApiLimits,
    /// Where plugin files may come from, how large they may be, and the compile cache's cap.
    pub plugin_files: PluginFiles,
    /// `[[registries]]`: where `oci://` plugins may be pulled from (none by default).
    pub registries: crate::registry::Registries,
    /// `[[pools]]` and `[agents]`: the agent pools, their tokens, the lease timing.
    pub pools: Pools,
    /// `tls`: serve HTTPS with this certificate and key (plain HTTP without).
    pub tls: Option<TlsFiles>,
}

/// `tls = { cert = "...", key = "..." }`: PEM files, relative to `sluice.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, the server's own first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Plugin files in service mode: only under the pipelines directory or `plugin-dirs`, at most
/// `limits.plugin-size` bytes; their compilations cached up to `limits.compile-cache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFiles {
    /// `plugin-dirs`: directories besides the pipelines directory that plugin files may lie in.
    pub dirs: Vec<PathBuf>,
    /// `limits.plugin-size`: the largest component file, in bytes.
    pub max_size: u64,
    /// `limits.compile-cache`: the most bytes of compiled components the data directory keeps.
    pub cache_max_bytes: u64,
}

impl PluginFiles {
    /// The plugin host's file policy: files under the pipelines directory or `dirs`.
    pub fn policy(&self, pipelines: &Path) -> crate::plugin::FilePolicy {
        let mut roots = vec![pipelines.to_owned()];
        roots.extend(self.dirs.iter().cloned());
        crate::plugin::FilePolicy {
            roots: Some(roots),
            max_size: self.max_size,
            ..crate::plugin::FilePolicy::default()
        }
    }
}

impl Default for PluginFiles {
    fn default() -> Self {
        Self {
            dirs: Vec::new(),
            max_size: crate::plugin::DEFAULT_PLUGIN_SIZE,
            cache_max_bytes: crate::plugin::DEFAULT_CACHE_MAX_BYTES,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    pipelines: PathBuf,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    plugin_dirs: Vec<PathBuf>,
    #[serde(default)]
    registries: Vec<registries::RawRegistry>,
    #[serde(default)]
    pools: Vec<pools::RawPool>,
    #[serde(default)]
    agents: pools::RawAgents,
    tls: Option<TlsFiles>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawUser {
    name: toml::Spanned<String>,
    token_sha256: Option<String>,
    token_env: Option<String>,
    roles: Vec<Role>,
    #[serde(default)]
    groups: Vec<toml::Spanned<String>>,
}

/// The line (from 1) of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// The sha256 of a token, as `sluice.toml` stores it (lowercase hex).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl ServiceConfig {
    /// The user of this name, if one is configured.
    pub fn user_named(&self, name: &str) -> Option<&User> {
        self.tokens.values().find(|u| u.name == name)
    }

    /// Reads and checks the file at `path`; relative paths in it are relative to its directory.
    /// Every problem is reported at once, one per line.
    pub fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(":{}", line_of(&text, s.start)))
                .unwrap_or_default();
            format!("{shown}{at}: {}", e.message().trim())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();
        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen = listen.parse().unwrap_or_else(|_| {
            problems.push(format!(
                "{shown}: listen = \"{listen}\" is not an address: write host:port, e.g. \"127.0.0.1:8080\""
            ));
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let plugin_dirs: Vec<PathBuf> = raw.plugin_dirs.iter().map(|d| base.join(d)).collect();
        for dir in &plugin_dirs {
            if !dir.is_dir() {
                problems.push(format!(
                    "{shown}: plugin-dirs: {} is not a directory: create it or remove it from the list",
                    dir.display()
                ));
            }
        }
        let (limits, plugin_limits) = limits::read(&raw.limits, &shown, &mut problems);
        let registries = registries::read(&raw.registries, &shown, base, &mut problems);
        let mut tokens = BTreeMap::new();
        let mut names = Vec::new();
        for (i, user) in raw.users.into_iter().enumerate() {
            let line = line_of(&text, user.name.span().start);
            let name = user.name.into_inner();
            let at = format!("{shown}:{line}: users[{i}] ({name})");
            // Approvers list users by name (and groups as `group:NAME`): one rule for names.
            if let Err(e) = Name::new(&name) {
                problems.push(format!("{shown}:{line}: users[{i}].name: {e}"));
                continue;
            }
            let mut groups = Vec::new();
            for group in user.groups {
                let line = line_of(&text, group.span().start);
                let group = group.into_inner();
                match Name::new(&group) {
                    Ok(_) => groups.push(group),
                    Err(e) => problems.push(format!(
                        "{shown}:{line}: users[{i}] ({name}): groups: {e} (approvers name it as `group:NAME`)"
                    )),
                }
            }
            if names.contains(&name) {
                problems.push(format!("{at}: a user of this name is listed twice"));
            }
            names.push(name.clone());
            if user.roles.is_empty() {
                problems.push(format!(
                    "{at}: give the user at least one role (viewer, releaser, approver, admin)"
                ));
            }
            let hash = match (&user.token_sha256, &user.token_env) {
                (Some(hash), None) => {
                    let hash = hash.to_ascii_lowercase();
                    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                        problems.push(format!(
                            "{at}: token-sha256 must be 64 hex digits (see `sluice token hash`)"
                        ));
                        continue;
                    }
                    hash
                }
                (None, Some(var)) => match std::env::var(var) {
                    Ok(token) if token.len() >= 16 => hash_token(&token),
                    Ok(_) => {
                        problems.push(format!(
                            "{at}: the token in ${var} is shorter than 16 characters (see `sluice token new`)"
                        ));
                        continue;
                    }
                    Err(_) => {
                        problems.push(format!("{at}: token-env: ${var} is not set"));
                        continue;
                    }
                },
                _ => {
                    problems.push(format!(
                        "{at}: set exactly one of token-sha256 and token-env"
                    ));
                    continue;
                }
            };
            let user = User {
                name,
                roles: user.roles,
                groups,
            };
            if let Some(other) = tokens.insert(hash, user) {
                problems.push(format!("{at}: has the same token as {}", other.name));
            }
        }
        let pools = pools::read(&raw.pools, &raw.agents, &tokens, &shown, &mut problems);
        let tls = raw.tls.map(|tls| TlsFiles {
            cert: base.join(tls.cert),
            key: base.join(tls.key),
        });
        for (key, file) in tls
            .iter()
            .flat_map(|t| [("cert", &t.cert), ("key", &t.key)])
        {
            if !file.is_file() {
                problems.push(format!(
                    "{shown}: tls.{key}: {} is not a file: give the PEM file's path (relative to sluice.toml)",
                    file.display()
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        Ok(Self {
            listen,
            data_dir: base.join(raw.data_dir.unwrap_or_else(|| ".sluice-service".into())),
            pipelines: base.join(raw.pipelines),
            tokens,
            limits,
            plugin_files: PluginFiles {
                dirs: plugin_dirs,
                max_size: plugin_limits.size,
                cache_max_bytes: plugin_limits.cache,
            },
            registries,
            pools,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_group_names_that_are_not_names_are_refused_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        let hash = hash_token("a-token-of-sixteen-chars");
        for (name, groups, line, problem) in [
            (
                "Ada",
                "[]",
                3,
                "users[0].name: `Ada` is not a valid name (it holds `A`)",
            ),
            (
                "group:ops",
                "[]",
                3,
                "users[0].name: `group:ops` is not a valid name (it holds `:`)",
            ),
            (
                "",
                "[]",
                3,
                "users[0].name: `` is not a valid name (it is empty)",
            ),
            (
                "ada",
                "[\n  \"ops\",\n  \"a b\",\n]",
                8,
                "users[0] (ada): groups: `a b` is not a valid name (it holds `U+0020`)",
            ),
        ] {
            let text = format!(
                "pipelines = \"p\"\n[[users]]\nname = \"{name}\"\ntoken-sha256 = \"{hash}\"\nroles = [\"admin\"]\ngroups = {groups}\n"
            );
            std::fs::write(&path, text).unwrap();
            let e = ServiceConfig::load(&path).unwrap_err();
            let place = format!("{}:{line}: {problem}", path.display());
            assert!(e.contains(&place), "{name}: {e}\nwanted: {place}");
        }
    }

    #[test]
    fn an_overflowing_duration_or_size_in_sluice_toml_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        let limits = "body = \"99999999999999999999GiB\"\nshutdown-grace = \"99999999999999999h\"";
        std::fs::write(&path, format!("pipelines = \"p\"\n[limits]\n{limits}\n")).unwrap();
        let e = ServiceConfig::load(&path).unwrap_err();
        assert!(
            e.contains(
                "limits.body: `99999999999999999999GiB` is too large: at most 17179869183 GiB"
            ),
            "{e}"
        );
        assert!(
            e.contains("limits.shutdown-grace: `99999999999999999h` is too long: at most 876000h"),
            "{e}"
        );
        let longest = "shutdown-grace = \"876000h\"";
        std::fs::write(&path, format!("pipelines = \"p\"\n[limits]\n{longest}\n")).unwrap();
        let config = ServiceConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.limits.shutdown_grace, crate::types::MAX_DURATION);
    }

    #[test]
    fn auth_failures_is_read_and_zero_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        let write = |n: &str| {
            std::fs::write(
                &path,
                format!("pipelines = \"p\"\n[limits]\nauth-failures = {n}\n"),
            )
        };
        write("5").unwrap();
        assert_eq!(ServiceConfig::load(&path).unwrap().limits.auth_failures, 5);
        write("0").unwrap();
        let e = ServiceConfig::load(&path).unwrap_err();
        assert!(e.contains("limits.auth-failures must be at least 1"), "{e}");
    }

    #[test]
    fn plugin_dirs_plugin_size_and_compile_cache_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::create_dir(dir.path().join("wasm")).unwrap();
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        write(
            "pipelines = \"p\"\nplugin-dirs = [\"wasm\"]\n[limits]\nplugin-size = \"1MiB\"\n\
             compile-cache = \"512MiB\"\n",
        );
        let config = ServiceConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.plugin_files.dirs, vec![dir.path().join("wasm")]);
        assert_eq!(config.plugin_files.max_size, 1 << 20);
        assert_eq!(config.plugin_files.cache_max_bytes, 512 << 20);
        let policy = config.plugin_files.policy(&config.pipelines);
        assert_eq!(
            policy.roots,
            Some(vec![dir.path().join("p"), dir.path().join("wasm")])
        );

        write(
            "pipelines = \"p\"\nplugin-dirs = [\"nowhere\"]\n[limits]\nplugin-size = \"lots\"\n\
             compile-cache = \"-1GiB\"\n",
        );
        let e = ServiceConfig::load(&path).unwrap_err();
        assert!(
            e.contains("plugin-dirs: ") && e.contains("nowhere is not a directory"),
            "{e}"
        );
        assert!(e.contains("limits.plugin-size: "), "{e}");
        assert!(e.contains("limits.compile-cache: "), "{e}");

        write("pipelines = \"p\"\n");
        let config = ServiceConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.plugin_files, PluginFiles::default());
    }
}
