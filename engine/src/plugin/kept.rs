//! The plugin store: the bytes of every plugin a release was created with, kept by their
//! sha256 under `DATA/plugins/sha256/HEX` (one file per digest, written once: a temporary file
//! synced, renamed into place, the directory synced). Every deployment, redeploy and rollback of
//! a release runs the bytes its digest names, whatever happened to the file it came from; a
//! blob is verified against its name whenever it is read (a changed one is refused, naming the
//! digest). The data directory is never granted to a task, so no plugin can write here.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Digest, LoadError, Plugin, PluginHost, PluginRef};
use crate::builtin::builtin;

/// Where the blobs are.
pub(super) struct Kept {
    dir: PathBuf,
}

impl Kept {
    /// The store under `dir` (made when the first blob is kept).
    pub(super) fn new(dir: PathBuf) -> Self {
        Self {
            dir: dir.join("sha256"),
        }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Writes `bytes` as the blob of `digest` unless it is there.
    fn put(&self, digest: &Digest, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(digest);
        if path.is_file() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        // A name of its own per write: two releases created at once may keep the same digest.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".{}.{}.{n}.tmp", digest.hex(), std::process::id()));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

impl PluginHost {
    /// Keeps the bytes of `plugin` (loaded from `reference`) in the plugin store, once per
    /// digest; nothing without a store. A file that changed since it was loaded is refused
    /// (load it again).
    pub fn keep(&self, reference: &PluginRef, plugin: &Plugin) -> Result<(), LoadError> {
        let Some(kept) = &self.kept else {
            return Ok(());
        };
        let digest = plugin.digest();
        if kept.path(&digest).is_file() {
            return Ok(());
        }
        let bytes = match reference {
            PluginRef::Builtin(name) => builtin(name)
                .ok_or_else(|| LoadError::UnknownBuiltin(name.clone()))?
                .bytes
                .to_vec(),
            PluginRef::File(given) => {
                let path = self.loading.resolve(given)?;
                self.loading.read(&path, &given.display().to_string())?
            }
            // Pulled into the store by `keep_pulled`, or the host has no store to keep it in.
            PluginRef::Oci(_) => return Ok(()),
        };
        if Digest::of(&bytes) != digest {
            return Err(LoadError::Kept {
                origin: reference.to_string(),
                digest,
                reason: "the file changed while it was read: try again".into(),
            });
        }
        kept.put(&digest, &bytes).map_err(|e| LoadError::Kept {
            origin: reference.to_string(),
            digest,
            reason: format!("cannot write {}: {e}", kept.path(&digest).display()),
        })
    }

    /// The plugin whose bytes the store keeps under `digest` (`origin` names it in errors):
    /// the one already loaded, or the blob read and verified. `None` when the store has no
    /// such blob (or there is no store).
    pub fn load_kept(
        &self,
        digest: &Digest,
        origin: &str,
    ) -> Result<Option<Arc<Plugin>>, LoadError> {
        if let Some(plugin) = self.lock_loaded().get(digest) {
            return Ok(Some(plugin.clone()));
        }
        match self.kept_bytes(digest, origin)? {
            Some(bytes) => self.load_bytes(&bytes, origin.to_owned()).map(Some),
            None => Ok(None),
        }
    }
}

impl PluginHost {
    /// Takes a component pulled from a registry: it is loaded (a component with a plugin world,
    /// or refused), and its manifest and bytes (both verified by the registry client) go into
    /// the plugin store.
    pub fn keep_pulled(
        &self,
        pulled: &crate::registry::Pulled,
        origin: &str,
    ) -> Result<(), LoadError> {
        let plugin = self.load_bytes(&pulled.component, origin.to_owned())?;
        if let Some(kept) = &self.kept {
            for (digest, bytes) in [
                (pulled.manifest, &pulled.manifest_bytes),
                (plugin.digest(), &pulled.component),
            ] {
                kept.put(&digest, bytes).map_err(|e| LoadError::Kept {
                    origin: origin.to_owned(),
                    digest,
                    reason: format!("cannot write {}: {e}", kept.path(&digest).display()),
                })?;
            }
        }
        self.lock_pulled().insert(pulled.manifest, plugin.digest());
        Ok(())
    }

    /// The largest component this host loads (from a file or a registry), in bytes.
    pub fn max_plugin_size(&self) -> u64 {
        self.loading.max_size()
    }

    /// Whether the component pinned by manifest `digest` is here (loaded or in the store).
    pub fn has_pulled(&self, digest: &Digest) -> bool {
        self.lock_pulled().contains_key(digest)
            || self.kept.as_ref().is_some_and(|k| k.path(digest).is_file())
    }

    fn lock_pulled(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Digest, Digest>> {
        self.pulled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An `oci://…@sha256:…` plugin, from what was pulled: never from the network.
    pub(super) fn load_oci(&self, text: &str) -> Result<Arc<Plugin>, LoadError> {
        let unusable = |reason: String| LoadError::Oci {
            reference: text.to_owned(),
            reason,
        };
        let reference = crate::registry::OciRef::parse(text).map_err(unusable)?;
        let Some(manifest) = reference.digest else {
            return Err(unusable(
                "it is not pinned to a digest: store the pipeline (`sluice validate`, `sluice run`, \
                 or the API) to resolve its tag"
                    .into(),
            ));
        };
        let component = self.lock_pulled().get(&manifest).copied();
        let component = match component {
            Some(component) => component,
            None => {
                let bytes = self.kept_bytes(&manifest, text)?.ok_or_else(|| {
                    unusable("it has not been pulled into the plugin store".into())
                })?;
                crate::registry::layer_of(&bytes).map_err(unusable)?.0
            }
        };
        self.load_kept(&component, text)?
            .ok_or_else(|| unusable("its component is not in the plugin store".into()))
    }

    /// The verified bytes of blob `digest` in the store, if it is there.
    pub fn kept_bytes(&self, digest: &Digest, origin: &str) -> Result<Option<Vec<u8>>, LoadError> {
        let Some(kept) = &self.kept else {
            return Ok(None);
        };
        let path = kept.path(digest);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = self.loading.read(&path, &path.display().to_string())?;
        let found = Digest::of(&bytes);
        if found != *digest {
            return Err(LoadError::Kept {
                origin: origin.to_owned(),
                digest: *digest,
                reason: format!(
                    "its bytes in the plugin store ({}) were changed: they hash to {found}; \
                     refusing to run them (restore the data directory from a backup)",
                    path.display()
                ),
            });
        }
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_written_once_under_its_digest_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let kept = Kept::new(dir.path().to_owned());
        let digest = Digest::of(b"bytes");
        kept.put(&digest, b"bytes").unwrap();
        kept.put(&digest, b"other").unwrap();
        assert_eq!(std::fs::read(kept.path(&digest)).unwrap(), b"bytes");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(digest.hex())]);
    }

    #[test]
    fn the_same_blob_kept_by_many_threads_at_once_is_written_whole_by_every_one() {
        let dir = tempfile::tempdir().unwrap();
        let kept = Kept::new(dir.path().to_owned());
        let bytes = vec![7u8; 1 << 20];
        let digest = Digest::of(&bytes);
        std::thread::scope(|s| {
            let puts: Vec<_> = (0..8)
                .map(|_| s.spawn(|| kept.put(&digest, &bytes)))
                .collect();
            for put in puts {
                put.join().unwrap().expect("every keeper succeeds");
            }
        });
        assert_eq!(std::fs::read(kept.path(&digest)).unwrap(), bytes);
        let left = std::fs::read_dir(dir.path().join("sha256"))
            .unwrap()
            .count();
        assert_eq!(left, 1, "no temporary file is left");
    }
}
