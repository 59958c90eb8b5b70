//! The agent's plugins: fetched from the server by the digest the release recorded, checked
//! against it, cached under `WORK/plugins/sha256/HEX`. A cached file is checked again every
//! time it is read: one that no longer matches its name (tampered, or torn) is discarded with a
//! warning and fetched again; bytes from the server that do not match refuse the job.

use std::path::PathBuf;
use std::sync::Arc;

use crate::api::client::Client;
use crate::plugin::{Digest, Plugin, PluginHost};
use crate::types::job::PluginCall;

/// Fetches, checks and caches plugins; loads them into the agent's host.
pub struct Plugins {
    dir: PathBuf,
    host: Arc<PluginHost>,
}

impl Plugins {
    /// A cache under `work_dir`.
    pub fn new(work_dir: &std::path::Path, host: Arc<PluginHost>) -> Self {
        Self {
            dir: work_dir.join("plugins").join("sha256"),
            host,
        }
    }

    /// The plugin `call` names, loaded: from the cache, or fetched from `client` as `agent`.
    pub async fn load(
        &self,
        call: &PluginCall,
        client: &Client,
        agent: &str,
    ) -> Result<Arc<Plugin>, String> {
        let digest = Digest::parse(&call.digest).ok_or_else(|| {
            format!(
                "plugin `{}`: `{}` is not a digest",
                call.reference, call.digest
            )
        })?;
        let path = self.dir.join(digest.hex());
        if let Ok(bytes) = std::fs::read(&path) {
            if Digest::of(&bytes) == digest {
                return self.loaded(&bytes, call);
            }
            tracing::warn!(
                "cached plugin {} (`{}`) does not match its digest: discarded, fetched again",
                path.display(),
                call.reference
            );
            let _ = std::fs::remove_file(&path);
        }
        let reply = client
            .get(&format!("/api/v1/agent/plugins/{digest}?agent={agent}"))
            .await?;
        if reply.status != 200 {
            return Err(format!(
                "fetching plugin `{}` ({digest}) from the server: {} {}",
                call.reference,
                reply.status,
                reply.text()
            ));
        }
        let got = Digest::of(&reply.body);
        if got != digest {
            return Err(format!(
                "plugin `{}` from the server is {got}, not the {digest} the release recorded: \
                 refusing the job",
                call.reference
            ));
        }
        self.keep(&digest, &reply.body)?;
        self.loaded(&reply.body, call)
    }

    fn loaded(&self, bytes: &[u8], call: &PluginCall) -> Result<Arc<Plugin>, String> {
        self.host
            .load_bytes(bytes, call.reference.clone())
            .map_err(|e| e.to_string())
    }

    /// Writes a checked plugin into the cache (a temporary file renamed into place).
    fn keep(&self, digest: &Digest, bytes: &[u8]) -> Result<(), String> {
        let path = self.dir.join(digest.hex());
        let temp = self
            .dir
            .join(format!(".{}.{}.tmp", digest.hex(), std::process::id()));
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&temp, bytes))
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|e| format!("caching plugin {digest} in {}: {e}", self.dir.display()))
    }
}
