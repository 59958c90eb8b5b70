//! Loading a plugin: reading a built-in or a component file (an unchanged file is not read
//! again), hashing it, compiling it (or taking it from the on-disk cache), linking it and
//! finding which plugin worlds it exports. The same bytes load once per host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use wasmtime::component::Component;

use super::bindings::{artifact_source, gate, task};
use super::{Digest, LoadError, Plugin, PluginHost, PluginRef, World};
use crate::builtin::builtin;

/// What identifies a file's content without reading it: path, size, modification and change
/// times (nanoseconds) and inode. Writing or replacing the file changes at least one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct FileKey {
    path: PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    ctime: (i64, i64),
    #[cfg(unix)]
    inode: u64,
}

impl FileKey {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Ok(Self {
            path: path.to_owned(),
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            ctime: (meta.ctime(), meta.ctime_nsec()),
            #[cfg(unix)]
            inode: meta.ino(),
        })
    }
}

impl PluginHost {
    /// Loads a built-in or a component file. The same bytes load once per host.
    pub fn load(&self, reference: &PluginRef) -> Result<Arc<Plugin>, LoadError> {
        match reference {
            PluginRef::Builtin(name) => {
                let builtin =
                    builtin(name).ok_or_else(|| LoadError::UnknownBuiltin(name.clone()))?;
                self.load_bytes(builtin.bytes, reference.to_string())
            }
            PluginRef::File(path) => {
                let read_err = |source| LoadError::Read {
                    path: path.clone(),
                    source,
                };
                let key = FileKey::of(path).map_err(read_err)?;
                let known = self
                    .files
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&key)
                    .cloned();
                if let Some(plugin) = known {
                    return Ok(plugin);
                }
                let bytes = std::fs::read(path).map_err(read_err)?;
                let plugin = self.load_bytes(&bytes, path.display().to_string())?;
                // Only remember the file if it did not change while it was read.
                if FileKey::of(path).ok() == Some(key.clone()) {
                    self.files
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, plugin.clone());
                }
                Ok(plugin)
            }
        }
    }

    /// Loads a component from bytes; `origin` names it in messages.
    pub fn load_bytes(&self, bytes: &[u8], origin: String) -> Result<Arc<Plugin>, LoadError> {
        let digest = Digest::of(bytes);
        if let Some(plugin) = self.lock_loaded().get(&digest) {
            return Ok(plugin.clone());
        }
        let plugin = Arc::new(self.compile(bytes, digest, origin)?);
        Ok(self.lock_loaded().entry(digest).or_insert(plugin).clone())
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Plugin>>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn compile(&self, bytes: &[u8], digest: Digest, origin: String) -> Result<Plugin, LoadError> {
        const CORE_MODULE: [u8; 8] = *b"\0asm\x01\0\0\0";
        if bytes.starts_with(&CORE_MODULE) {
            return Err(LoadError::NotAComponent(origin));
        }
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, &digest));
        let component = match cached {
            Some(component) => component,
            None => {
                let component =
                    Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
                        origin: origin.clone(),
                        reason: format!("{e:#}"),
                    })?;
                if let Some(cache) = &self.cache {
                    cache.store(&digest, &component);
                }
                component
            }
        };
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                origin: origin.clone(),
                reason: format!("{e:#}"),
            })?;
        let task = task::GuestIndices::new(&pre).ok();
        let gate = gate::GuestIndices::new(&pre).ok();
        let source = artifact_source::GuestIndices::new(&pre).ok();
        let worlds: Vec<World> = [
            (task.is_some(), World::Task),
            (source.is_some(), World::ArtifactSource),
            (gate.is_some(), World::Gate),
        ]
        .into_iter()
        .filter_map(|(has, world)| has.then_some(world))
        .collect();
        if worlds.is_empty() {
            return Err(LoadError::NoPluginExports(origin));
        }
        Ok(Plugin {
            digest,
            size: bytes.len(),
            origin,
            worlds,
            imports,
            exports,
            pre,
            task,
            gate,
            source,
        })
    }
}
