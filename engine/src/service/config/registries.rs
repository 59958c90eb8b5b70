//! `[[registries]]` in `sluice.toml`: the OCI registries the service pulls `oci://` plugins
//! from, and as whom. None by default: a pipeline stored through the API cannot make the server
//! reach a host its operator did not list (the grant comes from here, not from the pipeline).
//!
//! ```toml
//! [[registries]]
//! host = "registry.example.com"        # as references write it: host or host:port
//! username = "sluice"
//! password-env = "REGISTRY_PASSWORD"   # read as the server starts (or password-file)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::registry::{Credentials, OciRef, Registries};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawRegistry {
    host: String,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<std::path::PathBuf>,
}

/// The registries of the file `shown` (paths relative to `base`); each bad entry is a problem
/// naming it and what to write.
pub(super) fn read(
    raw: &[RawRegistry],
    shown: &std::path::Display<'_>,
    base: &Path,
    problems: &mut Vec<String>,
) -> Registries {
    let mut listed = BTreeMap::new();
    for (i, registry) in raw.iter().enumerate() {
        let at = format!("{shown}: registries[{i}] ({})", registry.host);
        // The host is what a reference to it would parse as, exactly.
        match OciRef::parse(&format!("oci://{}/x:t", registry.host)) {
            Ok(parsed) if parsed.registry == registry.host => {}
            _ => {
                problems.push(format!(
                    "{at}: host must be HOST or HOST:PORT, as `oci://HOST/REPO` writes it"
                ));
                continue;
            }
        }
        let password = match (&registry.password_env, &registry.password_file) {
            (Some(var), None) => {
                std::env::var(var).map_err(|_| format!("{at}: password-env: ${var} is not set"))
            }
            (None, Some(file)) => std::fs::read_to_string(base.join(file))
                .map(|p| p.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| format!("{at}: password-file {}: {e}", base.join(file).display())),
            (None, None) => Err(String::new()),
            (Some(_), Some(_)) => Err(format!("{at}: set one of password-env and password-file")),
        };
        let credentials = match (&registry.username, password) {
            (None, Err(e)) if e.is_empty() => Credentials::Anonymous,
            (Some(username), Ok(password)) => Credentials::Basic {
                username: username.clone(),
                password,
            },
            (_, Err(e)) if !e.is_empty() => {
                problems.push(e);
                continue;
            }
            _ => {
                problems.push(format!(
                    "{at}: give both username and a password (password-env or password-file), or neither"
                ));
                continue;
            }
        };
        if listed.insert(registry.host.clone(), credentials).is_some() {
            problems.push(format!("{at}: this registry is listed twice"));
        }
    }
    Registries::only(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<String> {
        #[derive(Deserialize)]
        struct File {
            registries: Vec<RawRegistry>,
        }
        let file: File = toml::from_str(text).unwrap();
        let mut problems = Vec::new();
        let shown = Path::new("sluice.toml");
        read(
            &file.registries,
            &shown.display(),
            Path::new("/nowhere"),
            &mut problems,
        );
        problems
    }

    #[test]
    fn bad_registry_entries_are_refused_each_saying_what_to_write() {
        let problems = problems_of(
            "[[registries]]\nhost = \"https://r.example\"\n\
             [[registries]]\nhost = \"r.example\"\nusername = \"u\"\n\
             [[registries]]\nhost = \"s.example\"\npassword-env = \"SLUICE_TEST_UNSET_VARIABLE\"\n\
             [[registries]]\nhost = \"t.example\"\nusername = \"u\"\npassword-file = \"missing\"\n\
             [[registries]]\nhost = \"127.0.0.1:5000\"\n[[registries]]\nhost = \"127.0.0.1:5000\"\n",
        );
        let expected = [
            "registries[0] (https://r.example): host must be HOST or HOST:PORT",
            "registries[1] (r.example): give both username and a password",
            "registries[2] (s.example): password-env: $SLUICE_TEST_UNSET_VARIABLE is not set",
            "registries[3] (t.example): password-file /nowhere/missing:",
            "registries[5] (127.0.0.1:5000): this registry is listed twice",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (problem, expected) in problems.iter().zip(expected) {
            assert!(problem.contains(expected), "{problem} lacks {expected}");
        }
    }
}
