//! The agent's plugins: fetched from the server by the digest the release recorded, checked
//! against it, cached under `WORK/plugins/sha256/HEX`. A cached file is checked again every
//! time it is read: one that no longer matches its name (tampered, or torn) is discarded with a
//! warning and fetched again; bytes from the server that do not match refuse the job. Once
//! checked and loaded, a plugin stays in memory by its digest (at most [`IN_MEMORY`] of them),
//! so a task of a plugin already run reads and hashes nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::api::client::Client;
use crate::plugin::{Digest, Plugin, PluginHost};
use crate::types::job::PluginCall;

/// Plugins kept loaded; past this many, the map starts again empty.
pub const IN_MEMORY: usize = 64;

/// Fetches, checks and caches plugins; loads them into the agent's host.
pub struct Plugins {
    dir: PathBuf,
    host: Arc<PluginHost>,
    loaded: Mutex<HashMap<Digest, Arc<Plugin>>>,
    /// Held while a plugin is read or fetched and compiled: jobs starting at once on a cold
    /// agent compile it once, not once each.
    loading: tokio::sync::Mutex<()>,
}

impl Plugins {
    /// A cache under `work_dir`.
    pub fn new(work_dir: &std::path::Path, host: Arc<PluginHost>) -> Self {
        Self {
            dir: work_dir.join("plugins").join("sha256"),
            host,
            loaded: Mutex::default(),
            loading: tokio::sync::Mutex::new(()),
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
        if let Some(plugin) = self.kept(&digest) {
            return Ok(plugin);
        }
        let _loading = self.loading.lock().await;
        if let Some(plugin) = self.kept(&digest) {
            return Ok(plugin); // loaded by the job that held the lock before
        }
        let plugin = self.read_or_fetch(call, &digest, client, agent).await?;
        {
            let mut kept = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() >= IN_MEMORY {
                kept.clear();
            }
            kept.insert(digest, plugin.clone());
        }
        Ok(plugin)
    }

    fn kept(&self, digest: &Digest) -> Option<Arc<Plugin>> {
        (self.loaded.lock().unwrap_or_else(|e| e.into_inner()))
            .get(digest)
            .cloned()
    }

    /// From the disk cache (checked), or from the server (checked, then cached).
    async fn read_or_fetch(
        &self,
        call: &PluginCall,
        digest: &Digest,
        client: &Client,
        agent: &str,
    ) -> Result<Arc<Plugin>, String> {
        let digest = *digest;
        let path = self.dir.join(digest.hex());
        if let Ok(bytes) = std::fs::read(&path) {
            if Digest::of(&bytes) == digest {
                return self.loaded(bytes, call).await;
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
        self.loaded(reply.body, call).await
    }

    /// Loads (compiles, or reads the compile cache) off the async threads: renewals and the
    /// other jobs' reports go on meanwhile.
    async fn loaded(&self, bytes: Vec<u8>, call: &PluginCall) -> Result<Arc<Plugin>, String> {
        let (host, origin) = (self.host.clone(), call.reference.clone());
        tokio::task::spawn_blocking(move || host.load_bytes(&bytes, origin))
            .await
            .map_err(|e| format!("loading plugin `{}`: {e}", call.reference))?
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
