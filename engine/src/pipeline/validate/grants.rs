//! What a call may reach (`grants`: directories, environment variables, hosts, workspace) and
//! use (`limits` and `timeout`).

use std::path::Path;

use toml::Spanned;

use super::Validator;
use crate::pipeline::plan::*;
use crate::pipeline::schema::*;
use crate::types::{Access, Limits, parse_bytes};

impl Validator<'_> {
    pub(super) fn grants(
        &mut self,
        raw: &RawGrants,
        default_workspace: Option<Access>,
    ) -> GrantSpec {
        let mut dirs = Vec::new();
        for dir in &raw.dirs {
            let d = dir.get_ref();
            let access = match d.access.as_deref() {
                None | Some("ro") => Access::ReadOnly,
                Some("rw") => Access::ReadWrite,
                Some(other) => {
                    self.error(
                        Some(dir.span()),
                        format!("unknown access `{other}`"),
                        Some("use `ro` or `rw`"),
                    );
                    Access::ReadOnly
                }
            };
            let resolved = d
                .host
                .replace("$(sluice.pipeline-dir)", "/")
                .replace("$(sluice.data-dir)", "/");
            if !Path::new(&resolved).is_absolute() {
                self.error(
                    Some(dir.span()),
                    format!("directory grant `{}` is a relative path", d.host),
                    Some("grant an absolute path, or one under `$(sluice.pipeline-dir)`"),
                );
            }
            if d.host.starts_with("$(sluice.data-dir)") {
                self.error(
                    Some(dir.span()),
                    format!(
                        "directory grant `{}` is built on `$(sluice.data-dir)`: the data \
                         directory holds the store and the compiled plugins and is never granted",
                        d.host
                    ),
                    Some("grant a directory outside it, e.g. under `$(sluice.pipeline-dir)`"),
                );
            }
            if !d.guest.starts_with('/') {
                self.error(
                    Some(dir.span()),
                    format!("guest path `{}` must be absolute", d.guest),
                    Some("write e.g. `guest = \"/target\"`"),
                );
            }
            dirs.push(DirSpec {
                host: d.host.clone(),
                guest: d.guest.clone(),
                access,
            });
        }
        for env in &raw.env {
            let name = env.get_ref();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.error(
                    Some(env.span()),
                    format!("invalid environment variable name `{name}`"),
                    None,
                );
            }
        }
        for host in &raw.hosts {
            if let Err(e) = crate::types::Grants::none().host(host.get_ref().clone()) {
                self.error(Some(host.span()), e.to_string(), None);
            }
        }
        let workspace = match raw
            .workspace
            .as_ref()
            .map(|w| (w.get_ref().as_str(), w.span()))
        {
            None => default_workspace,
            Some(("none", _)) => None,
            Some(("ro", _)) => Some(Access::ReadOnly),
            Some(("rw", _)) => Some(Access::ReadWrite),
            Some((other, span)) => {
                self.error(
                    Some(span),
                    format!("unknown workspace access `{other}`"),
                    Some("use `none`, `ro` or `rw`"),
                );
                default_workspace
            }
        };
        GrantSpec {
            dirs,
            env: raw.env.iter().map(|e| e.get_ref().clone()).collect(),
            hosts: raw.hosts.iter().map(|h| h.get_ref().clone()).collect(),
            workspace,
        }
    }

    pub(super) fn bytes(
        &mut self,
        text: &Option<Spanned<String>>,
        what: &str,
        default: u64,
    ) -> u64 {
        let Some(text) = text else { return default };
        match parse_bytes(text.get_ref()) {
            Ok(b) => b,
            Err(e) => {
                self.error(Some(text.span()), format!("{what}: {e}"), None);
                default
            }
        }
    }

    pub(super) fn limits(&mut self, raw: &RawLimits, timeout: &Option<Spanned<String>>) -> Limits {
        let defaults = Limits::default();
        Limits {
            memory: self.bytes(&raw.memory, "limits.memory", defaults.memory),
            log: self.bytes(&raw.log, "limits.log", defaults.log),
            output: self.bytes(&raw.output, "limits.output", defaults.output),
            timeout: timeout
                .as_ref()
                .and_then(|t| self.duration(t, "timeout"))
                .unwrap_or(defaults.timeout),
        }
    }
}
