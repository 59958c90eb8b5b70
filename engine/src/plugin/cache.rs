//! Compiled components on disk, keyed by the component's sha256 digest and the engine's
//! compatibility hash, so a cached artifact is only ever loaded into an engine that can run it.
//!
//! Only files this cache wrote are deserialized: names are derived from the digest and the
//! engine hash, files are written aside and renamed into place, and the directory is created
//! owner-only. Anyone who can write the data directory can already change what the engine
//! runs; the cache adds no new way in.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::Digest;

pub(crate) struct Cache {
    dir: PathBuf,
    /// Hex of the engine's `precompile_compatibility_hash`.
    engine_key: String,
}

impl Cache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.hex(), self.engine_key))
    }

    /// The cached compilation of `digest`, if there is a usable one.
    pub(crate) fn load(&self, engine: &Engine, digest: &Digest) -> Option<Component> {
        let path = self.path(digest);
        // Read into memory rather than map the file: a mapped file truncated by someone else
        // would crash the engine (SIGBUS) instead of just costing a recompilation.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: the file was written by `store` below from `Component::serialize` of an
        // engine with the same compatibility hash (it is in the name); see the module docs for
        // why nothing else writes here. Truncated or corrupted files fail wasmtime's checks.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, &bytes) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled plugin");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compilation; failures only cost a recompilation later, so they are logged.
    pub(crate) fn store(&self, digest: &Digest, component: &Component) {
        let path = self.path(digest);
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|bytes| {
                let aside = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&aside, bytes)?;
                std::fs::rename(&aside, &path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled plugin");
        }
    }
}
