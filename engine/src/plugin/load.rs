//! Loading a plugin: reading a built-in or a component file (an unchanged file is not read
//! again), hashing it, compiling it (or taking it from the on-disk cache) with the compiler
//! `tier.rs` says, linking it and finding which plugin worlds it exports. The same bytes load
//! once per host.
//!
//! A file is only what a [`FilePolicy`] allows: under its roots (service mode: the pipelines
//! directory and `plugin-dirs`; a path outside them, or missing, gets one answer that says
//! neither), a regular file (opened non-blocking, so a FIFO or a device never hangs the
//! caller), at most `limits.plugin-size` bytes (read through `take`, so a growing file stops
//! there). Errors never quote a file's bytes. Compilation runs on its own thread, at most
//! [`FilePolicy::compilations`] at once, and the caller waits at most
//! [`FilePolicy::compile_time`]: a compilation past it goes on in the background (its
//! thread keeps its turn until it ends) and the load fails, saying so.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component as PathPart, Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use super::bindings::{artifact_source, gate, task};
use super::tier::{Compiler, Tier};
use super::{Code, Digest, LoadError, Plugin, PluginHost, PluginRef, World};
use crate::builtin::builtin;

/// The default `limits.plugin-size`: the largest component file loaded, 64 MiB.
pub const DEFAULT_PLUGIN_SIZE: u64 = 64 << 20;

/// Where plugin files may come from, how large they may be, and how compilation is bounded.
#[derive(Debug, Clone)]
pub struct FilePolicy {
    /// Directories a plugin file must lie under, symlinks resolved; `None` allows any path
    /// (`sluice run`, whose operator wrote the pipeline).
    pub roots: Option<Vec<PathBuf>>,
    /// The largest component file, in bytes (`limits.plugin-size`).
    pub max_size: u64,
    /// How many components may compile at once.
    pub compilations: usize,
    /// How long a load waits for its turn and its compilation together.
    pub compile_time: Duration,
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self {
            roots: None,
            max_size: DEFAULT_PLUGIN_SIZE,
            compilations: std::thread::available_parallelism().map_or(2, usize::from),
            compile_time: Duration::from_secs(120),
        }
    }
}

/// Why a plugin file, or bytes given as one, is refused before compilation.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Missing, or outside the allowed roots: one answer for both, so it tells nothing about
    /// files outside the roots.
    #[error(
        "plugin `{0}` is not a component file under the plugin directories: put it in the \
         pipelines directory or a directory listed in `plugin-dirs` in sluice.toml"
    )]
    NotAllowed(String),
    /// A directory, FIFO, socket or device.
    #[error("plugin `{0}` is not a regular file: give the path of a component (`.wasm`) file")]
    NotAFile(String),
    /// Larger than `limits.plugin-size`.
    #[error(
        "plugin `{path}` is larger than limits.plugin-size ({limit} bytes): shrink the \
         component or raise `limits.plugin-size` in sluice.toml"
    )]
    TooLarge {
        /// The file.
        path: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Does not start with the WebAssembly header.
    #[error(
        "{0} is not a WebAssembly component: give a component built for the `wasm32-wasip2` \
         target (`cargo build --target wasm32-wasip2`)"
    )]
    NotWasm(String),
    /// Waiting for a turn and compiling took longer than the budget.
    #[error(
        "compiling {origin} did not finish within {}s (at most {compilations} plugins compile \
         at once): try again, or use a smaller component",
        budget.as_secs()
    )]
    CompileTime {
        /// Where it came from.
        origin: String,
        /// The budget.
        budget: Duration,
        /// How many compile at once.
        compilations: usize,
    },
}

/// A host's [`FilePolicy`], its roots resolved, and the turns of the compilations.
pub(super) struct Loading {
    policy: FilePolicy,
    turns: Arc<Turns>,
}

impl Loading {
    /// The largest component loaded, in bytes.
    pub(super) fn max_size(&self) -> u64 {
        self.policy.max_size
    }
}

/// A counting semaphore of compilation turns (std: loads are synchronous).
struct Turns {
    busy: Mutex<usize>,
    freed: Condvar,
}

/// One compilation's turn; given back when dropped.
struct Turn(Arc<Turns>);

impl Drop for Turn {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        self.0.freed.notify_one();
    }
}

impl Loading {
    pub(super) fn new(mut policy: FilePolicy) -> Self {
        if let Some(roots) = &mut policy.roots {
            for root in roots.iter_mut() {
                *root = std::fs::canonicalize(&*root).unwrap_or_else(|_| normal(root));
            }
        }
        policy.compilations = policy.compilations.max(1);
        Self {
            policy,
            turns: Arc::new(Turns {
                busy: Mutex::new(0),
                freed: Condvar::new(),
            }),
        }
    }

    /// The file to read for `path`: itself, or — with roots — its real path if that lies under
    /// a root. A path outside the roots is not looked at on disk at all.
    pub(super) fn resolve(&self, path: &Path) -> Result<PathBuf, LoadError> {
        let Some(roots) = &self.policy.roots else {
            return Ok(path.to_owned());
        };
        let refused = || LoadError::File(FileError::NotAllowed(path.display().to_string()));
        let under = |p: &Path| roots.iter().any(|root| p.starts_with(root));
        if !path.is_absolute() || !under(&normal(path)) {
            return Err(refused());
        }
        match std::fs::canonicalize(path) {
            Ok(real) if under(&real) => Ok(real),
            _ => Err(refused()),
        }
    }

    /// At most `max_size` bytes of the regular file at `path`, or why not.
    pub(super) fn read(&self, path: &Path, shown: &str) -> Result<Vec<u8>, LoadError> {
        let read_err = |source| LoadError::Read {
            path: path.to_owned(),
            source,
        };
        let mut open = std::fs::OpenOptions::new();
        open.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Opening a FIFO for reading would wait for a writer: never wait.
            open.custom_flags(libc::O_NONBLOCK);
        }
        let file = open.open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(FileError::NotAFile(shown.to_owned()).into());
        }
        let limit = self.policy.max_size;
        let too_large = || {
            LoadError::File(FileError::TooLarge {
                path: shown.to_owned(),
                limit,
            })
        };
        if meta.len() > limit {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        Ok(bytes)
    }

    /// Compiles `bytes` on a thread of its own, in turn, within the time budget.
    fn compile(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
        origin: &str,
    ) -> Result<wasmtime::Result<Component>, LoadError> {
        let budget = self.policy.compile_time;
        let deadline = Instant::now() + budget;
        let late = || {
            LoadError::File(FileError::CompileTime {
                origin: origin.to_owned(),
                budget,
                compilations: self.policy.compilations,
            })
        };
        let engine = engine.clone();
        let bytes = bytes.to_vec();
        let turns = self.turns.clone();
        let max = self.policy.compilations;
        blocking(move || {
            let turn = {
                let mut busy = turns.busy.lock().unwrap_or_else(PoisonError::into_inner);
                while *busy >= max {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    busy = turns
                        .freed
                        .wait_timeout(busy, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                *busy += 1;
                Turn(turns.clone())
            };
            let (done, result) = std::sync::mpsc::sync_channel(1);
            let spawned = std::thread::Builder::new()
                .name("sluice-compile".into())
                .spawn(move || {
                    let _turn = turn;
                    let _ = done.send(Component::new(&engine, &bytes));
                });
            if spawned.is_err() {
                return None;
            }
            result
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()
        })
        .ok_or_else(late)
    }
}

/// Runs `f`, which blocks, letting a multi-threaded tokio runtime move its other tasks off
/// this thread meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// `path` with `.` and `..` taken out, lexically.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            PathPart::CurDir => {}
            PathPart::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

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
    fn of(path: &Path) -> std::io::Result<(Self, bool)> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        let key = Self {
            path: path.to_owned(),
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            ctime: (meta.ctime(), meta.ctime_nsec()),
            #[cfg(unix)]
            inode: meta.ino(),
        };
        Ok((key, meta.is_file()))
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
            PluginRef::File(given) => {
                let shown = given.display().to_string();
                let path = self.loading.resolve(given)?;
                let (key, regular) = FileKey::of(&path).map_err(|source| LoadError::Read {
                    path: given.clone(),
                    source,
                })?;
                if !regular {
                    return Err(FileError::NotAFile(shown).into());
                }
                let known = self
                    .files
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&key)
                    .cloned();
                if let Some(plugin) = known {
                    return Ok(plugin);
                }
                let bytes = self.loading.read(&path, &shown)?;
                let plugin = self.load_bytes(&bytes, shown)?;
                // Only remember the file if it did not change while it was read.
                if FileKey::of(&path).ok().map(|(k, _)| k) == Some(key.clone()) {
                    self.files
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, plugin.clone());
                }
                Ok(plugin)
            }
            PluginRef::Oci(text) => self.load_oci(text),
        }
    }

    /// Loads a component from bytes; `origin` names it in messages.
    pub fn load_bytes(&self, bytes: &[u8], origin: String) -> Result<Arc<Plugin>, LoadError> {
        let digest = Digest::of(bytes);
        if let Some(plugin) = self.lock_loaded().get(&digest) {
            return Ok(plugin.clone());
        }
        let plugin = self.compile(bytes, digest, origin)?;
        Ok(self.lock_loaded().entry(digest).or_insert(plugin).clone())
    }

    pub(super) fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Plugin>>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn compile(
        &self,
        bytes: &[u8],
        digest: Digest,
        origin: String,
    ) -> Result<Arc<Plugin>, LoadError> {
        const CORE_MODULE: [u8; 8] = *b"\0asm\x01\0\0\0";
        if bytes.starts_with(&CORE_MODULE) {
            return Err(LoadError::NotAComponent(origin));
        }
        // wasmparser's message for a file that is not WebAssembly quotes its first bytes.
        if !bytes.starts_with(b"\0asm") {
            return Err(FileError::NotWasm(origin).into());
        }
        let (tier, component) = self.compilation(bytes, &digest, &origin)?;
        let ty = component.component_type();
        let imports = ty
            .imports(&tier.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let exports = ty
            .exports(&tier.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let code = link(tier, &component, &origin)?;
        let worlds: Vec<World> = [
            (code.task.is_some(), World::Task),
            (code.source.is_some(), World::ArtifactSource),
            (code.gate.is_some(), World::Gate),
        ]
        .into_iter()
        .filter_map(|(has, world)| has.then_some(world))
        .collect();
        if worlds.is_empty() {
            return Err(LoadError::NoPluginExports(origin));
        }
        let quick = code.compiler == Compiler::Winch;
        let plugin = Arc::new(Plugin {
            digest,
            size: bytes.len(),
            origin,
            worlds,
            imports,
            exports,
            code: Mutex::new(Arc::new(code)),
            replaced: Condvar::new(),
        });
        if let (true, Some(tier_up)) = (quick, &self.tier_up) {
            tier_up.request(&plugin, bytes);
        }
        Ok(plugin)
    }

    /// A compilation of `bytes`: Cranelift's from the cache; or, for a large component, Winch's
    /// from the cache or compiled now; or Cranelift's compiled now (also when Winch refuses a
    /// component, which Cranelift then explains). New compilations are cached.
    fn compilation(
        &self,
        bytes: &[u8],
        digest: &Digest,
        origin: &str,
    ) -> Result<(&Tier, Component), LoadError> {
        let cache = self.cache.as_deref();
        if let Some(component) = cache.and_then(|c| c.load(&self.tier, digest)) {
            return Ok((&self.tier, component));
        }
        let quick = self
            .quick
            .as_ref()
            .filter(|_| bytes.len() as u64 >= self.tiering.quick_from);
        if let Some(quick) = quick {
            if let Some(component) = cache.and_then(|c| c.load(quick, digest)) {
                return Ok((quick, component));
            }
            match self.loading.compile(&quick.engine, bytes, origin)? {
                Ok(component) => {
                    if let Some(cache) = cache {
                        cache.store(quick, digest, &component);
                    }
                    return Ok((quick, component));
                }
                Err(e) => {
                    tracing::debug!(plugin = origin, error = %e, "Winch refused a plugin: compiling it with Cranelift")
                }
            }
        }
        let component = self
            .loading
            .compile(&self.tier.engine, bytes, origin)?
            .map_err(|e| LoadError::Compile {
                origin: origin.to_owned(),
                reason: format!("{e:#}"),
            })?;
        if let Some(cache) = cache {
            cache.store(&self.tier, digest, &component);
        }
        Ok((&self.tier, component))
    }
}

/// `component`, compiled by `tier`, linked against `tier`'s imports, with the plugin worlds it
/// exports found.
pub(super) fn link(tier: &Tier, component: &Component, origin: &str) -> Result<Code, LoadError> {
    let pre = tier
        .linker
        .instantiate_pre(component)
        .map_err(|e| LoadError::Link {
            origin: origin.to_owned(),
            reason: format!("{e:#}"),
        })?;
    Ok(Code {
        compiler: tier.compiler,
        task: task::GuestIndices::new(&pre).ok(),
        gate: gate::GuestIndices::new(&pre).ok(),
        source: artifact_source::GuestIndices::new(&pre).ok(),
        pre,
    })
}
