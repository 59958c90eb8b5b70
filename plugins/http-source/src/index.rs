//! The index a `http-source` reads: a JSON document listing an artifact's versions.
//!
//! ```json
//! { "versions": [
//!     { "id": "1.4.0", "created": "2026-11-30T12:00:00Z", "branch": "main",
//!       "commit": "9f2c1e", "tags": ["stable"], "url": "site-1.4.0.tar.gz",
//!       "sha256": "3b0c…", "size": 48213 }
//! ] }
//! ```
//!
//! `id`, `url` and `sha256` are required; `url` may be relative to the index. `created` is
//! RFC 3339 or seconds since the Unix epoch. `format` (`tar.gz`, `tar`, `zip`, `file`) is taken
//! from the URL's file name when it is not given.

use serde::Deserialize;
use sluice_plugin_sdk::units;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Index {
    pub versions: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    pub id: String,
    #[serde(default)]
    pub created: Option<Created>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub url: String,
    pub sha256: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub format: Option<Format>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Created {
    Seconds(u64),
    Text(String),
}

impl Created {
    /// Seconds since the Unix epoch.
    pub(crate) fn seconds(&self) -> Result<u64, String> {
        match self {
            Created::Seconds(s) => Ok(*s),
            Created::Text(text) => units::rfc3339(text)
                .ok_or_else(|| format!("`created = \"{text}\"` is not an RFC 3339 time")),
        }
    }
}

/// How a version's file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum Format {
    #[serde(rename = "tar.gz", alias = "tgz")]
    TarGz,
    #[serde(rename = "tar")]
    Tar,
    #[serde(rename = "zip")]
    Zip,
    /// One file, kept under its name.
    #[serde(rename = "file")]
    File,
}

impl Format {
    /// The format a file name says.
    pub(crate) fn of(name: &str) -> Self {
        let name = name.to_ascii_lowercase();
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Format::TarGz
        } else if name.ends_with(".tar") {
            Format::Tar
        } else if name.ends_with(".zip") {
            Format::Zip
        } else {
            Format::File
        }
    }
}

impl Entry {
    /// The digest as lowercase hex, from `sha256` written with or without `sha256:`.
    pub(crate) fn digest(&self) -> Result<String, String> {
        let hex = self.sha256.strip_prefix("sha256:").unwrap_or(&self.sha256);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(hex.to_ascii_lowercase())
        } else {
            Err(format!(
                "version `{}` has `sha256 = \"{}\"`, which is not 64 hex digits",
                self.id, self.sha256
            ))
        }
    }
}
