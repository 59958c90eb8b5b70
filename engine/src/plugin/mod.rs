//! The plugin host: runs WebAssembly components in a sandbox. **The only module that imports
//! wasmtime** (and the WASI crates); the rest of the engine sees [`PluginHost`], [`Plugin`] and
//! the plain types of [`api`].
//!
//! A call builds a fresh store from its [`Sandbox`] (grants, limits, log), instantiates the
//! plugin through its cached `InstancePre`, calls one export, and drops the store. Limits:
//! memory through a `ResourceLimiter` (one budget for all the call's memories, tables and
//! host resources), time through epoch interruption (the guest yields every
//! tick) plus a timeout around the whole call (which also covers a guest blocked in a host call),
//! log volume in the log import and stdio, output size after the call, stack engine-wide.
//!
//! Files: this one holds the host, its configuration and errors, [`Plugin`] and [`Digest`];
//! `load.rs` reads, hashes, compiles (through `cache.rs`), links and remembers components;
//! `tier.rs` holds the two compilers (Winch for a fast first run, Cranelift for the code kept);
//! `call.rs` makes the calls and tells their outcomes apart; `sandbox.rs`, `limits.rs` and
//! `log.rs` are what a call's store holds; `fs.rs` refuses files that are not files and links
//! that leave their directory; `bindings.rs` is the generated code.

mod bindings;
mod cache;
mod call;
mod fs;
mod guest;
mod kept;
mod limits;
mod load;
mod log;
mod mask;
mod outline;
mod sandbox;
mod stdio;
mod tier;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use wasmtime::component::InstancePre;
use wasmtime::{Config, Engine};

use crate::builtin::BUILTINS;
use crate::types::{Grants, Limits};
pub use load::{DEFAULT_PLUGIN_SIZE, FileError, FilePolicy};
pub use log::LogSink;
pub use outline::worlds_of;
pub use tier::{Compiler, DEFAULT_QUICK_FROM, Tiering};

use crate::types::grants;
use bindings::{artifact_source, gate, task};
use cache::Cache;
use load::{FileKey, Loading};
use sandbox::State;
use tier::{Tier, TierUp};

/// How often the engine's epoch advances: the granularity of time limits and of the guest
/// yielding to other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The compile cache's default size cap: 2 GiB (a compiled Python or JavaScript component is
/// 30–60 MiB, a Rust one well under 1 MiB).
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

/// Engine-wide settings of the host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// The most bytes the cache keeps: past it, the least recently used compilations go.
    pub cache_max_bytes: u64,
    /// Where the plugins of releases are kept by digest (`DATA/plugins`, `kept.rs`); `None`
    /// keeps none (a release then runs its plugin files, refused if they changed).
    pub store_dir: Option<PathBuf>,
    /// The WebAssembly stack a call may use, in bytes.
    pub max_stack: usize,
    /// Where component files may come from, their size, and the bound on compilation.
    pub files: FilePolicy,
    /// Which compiler compiles what (`tier.rs`).
    pub tiering: Tiering,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            store_dir: None,
            max_stack: 512 << 10,
            files: FilePolicy::default(),
            tiering: Tiering::default(),
        }
    }
}

impl HostConfig {
    /// The host of a data directory, as every command and the service use it: compilations
    /// cached in `DATA/compiled`, the plugins of releases kept in `DATA/plugins`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            cache_dir: Some(data_dir.join("compiled")),
            store_dir: Some(data_dir.join("plugins")),
            ..Self::default()
        }
    }
}

/// The sha256 digest of a component's bytes: its identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Lowercase hex, without prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses `sha256:<hex>` (or bare hex).
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        let mut bytes = [0; 32];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The plugin worlds of `wit/`: what a component can be used as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// `task-plugin`: a deployment task.
    Task,
    /// `artifact-source-plugin`: lists and fetches artifact versions.
    ArtifactSource,
    /// `gate-plugin`: evaluates a condition.
    Gate,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            World::Task => "task",
            World::ArtifactSource => "artifact-source",
            World::Gate => "gate",
        })
    }
}

/// Where a plugin comes from: a built-in name or a component file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    /// A plugin embedded in the binary, by name.
    Builtin(String),
    /// A component file.
    File(PathBuf),
    /// A component in an OCI registry, `oci://HOST/REPO[:TAG]@sha256:HEX` (as written; checked
    /// when loaded): run only from the plugin store, where `registry::pin` puts it.
    Oci(String),
}

impl PluginRef {
    /// `copy` names a built-in; anything with a `/` or ending in `.wasm` is a file, relative
    /// to `base`.
    pub fn parse(text: &str, base: &Path) -> Self {
        if text.starts_with(crate::registry::SCHEME) {
            Self::Oci(text.to_owned())
        } else if text.contains('/') || text.ends_with(".wasm") {
            Self::File(grants::absolute(base, Path::new(text)))
        } else {
            Self::Builtin(text.to_owned())
        }
    }
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginRef::Builtin(name) => write!(f, "built-in plugin `{name}`"),
            PluginRef::File(path) => write!(f, "{}", path.display()),
            PluginRef::Oci(reference) => f.write_str(reference),
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No built-in has that name.
    #[error(
        "there is no built-in plugin named `{0}` (built-ins: {names}); a component file's path \
         must contain a `/` or end in `.wasm`",
        names = BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
    )]
    UnknownBuiltin(String),
    /// A core module where a component was expected.
    #[error(
        "{0} is a core WebAssembly module, not a component: build it for the `wasm32-wasip2` \
         target (`cargo build --target wasm32-wasip2`)"
    )]
    NotAComponent(String),
    /// Not WebAssembly, or invalid.
    #[error("{origin} is not a valid WebAssembly component: {reason}")]
    Compile {
        /// Where it came from.
        origin: String,
        /// Why.
        reason: String,
    },
    /// The component imports something the host does not provide.
    #[error(
        "{origin} needs an import Sluice does not provide (plugins may import WASI 0.2 and \
         `sluice:plugin/log`): {reason}"
    )]
    Link {
        /// Where it came from.
        origin: String,
        /// Why.
        reason: String,
    },
    /// The component exports none of the plugin worlds.
    #[error(
        "{0} exports none of the Sluice plugin worlds (task, artifact-source, gate): build it \
         with the plugin SDK's `export_task!`, `export_gate!` or `export_artifact_source!`"
    )]
    NoPluginExports(String),
    /// The plugin store could not keep a plugin's bytes, or the bytes it keeps were changed.
    #[error("plugin {origin} ({digest}): {reason}")]
    Kept {
        /// Where it came from.
        origin: String,
        /// Its digest, as the release recorded it.
        digest: Digest,
        /// What went wrong.
        reason: String,
    },
    /// An `oci://` plugin that cannot be run: a bad reference, not pinned, or not pulled.
    #[error("plugin {reference}: {reason}")]
    Oci {
        /// The reference as written.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The file, or the bytes, are refused before compilation (where, type, size, header,
    /// time).
    #[error(transparent)]
    File(#[from] FileError),
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the plugin host: {0}")]
pub struct HostError(String);

/// A loaded plugin: compiled, linked, and ready to instantiate cheaply.
pub struct Plugin {
    digest: Digest,
    size: usize,
    origin: String,
    worlds: Vec<World>,
    imports: Vec<String>,
    exports: Vec<String>,
    /// What calls instantiate: Winch's code until Cranelift's replaces it (`tier.rs`).
    code: Mutex<Arc<Code>>,
    replaced: Condvar,
}

/// One compilation of a plugin, linked: instantiated by each call, in a store of its engine.
pub(super) struct Code {
    compiler: Compiler,
    pre: InstancePre<State>,
    task: Option<task::GuestIndices>,
    gate: Option<gate::GuestIndices>,
    source: Option<artifact_source::GuestIndices>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("origin", &self.origin)
            .field("digest", &self.digest)
            .field("worlds", &self.worlds)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The sha256 digest of the component.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Where it was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The plugin worlds it implements.
    pub fn worlds(&self) -> &[World] {
        &self.worlds
    }

    /// Whether it implements `world`.
    pub fn implements(&self, world: World) -> bool {
        self.worlds.contains(&world)
    }

    /// Names of the component's imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Names of the component's exports.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// The compiler whose code the next call runs.
    pub fn compiler(&self) -> Compiler {
        self.code().compiler
    }

    /// Waits at most `within` for Cranelift's code to replace Winch's; whether it has.
    pub fn wait_for_cranelift(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut code = self.code.lock().unwrap_or_else(PoisonError::into_inner);
        while code.compiler != Compiler::Cranelift {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            code = self
                .replaced
                .wait_timeout(code, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn code(&self) -> Arc<Code> {
        self.code
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace_code(&self, code: Code) {
        *self.code.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(code);
        self.replaced.notify_all();
    }
}

/// What a plugin call may reach and use.
#[derive(Clone, Default)]
pub struct Sandbox {
    /// Directories, environment variables and hosts. Empty by default.
    pub grants: Grants,
    /// Memory, time, log and output bounds.
    pub limits: Limits,
    /// Secret values to mask in log lines.
    pub mask: Vec<String>,
    /// Receives log lines and progress as they happen.
    pub sink: Option<LogSink>,
}

/// Runs plugins. One per process; cheap to share behind an `Arc`.
pub struct PluginHost {
    /// Cranelift: the code kept.
    tier: Tier,
    /// Winch, where it runs: the first code of large components.
    quick: Option<Tier>,
    tiering: Tiering,
    /// Compiles Winch-compiled plugins with Cranelift, with `tiering.tier_up`.
    tier_up: Option<TierUp>,
    cache: Option<Arc<Cache>>,
    loading: Loading,
    loaded: Mutex<HashMap<Digest, Arc<Plugin>>>,
    /// Files already hashed, by what identifies their content on disk: an unchanged file is
    /// not read again; a replaced or rewritten one changes its key and is hashed anew.
    files: Mutex<HashMap<FileKey, Arc<Plugin>>>,
    max_stack: usize,
    /// The plugin store (`kept.rs`).
    kept: Option<kept::Kept>,
    /// Components pulled from registries: manifest digest -> component digest (also kept in
    /// the store, as the manifest's own blob, when there is one).
    pulled: Mutex<HashMap<Digest, Digest>>,
    _ticker: Ticker,
}

impl PluginHost {
    /// Starts a host: a wasmtime engine and linker (WASI 0.2, wasi:http, the log import) for
    /// each compiler, the compiled-artifact cache, the background compiler and the epoch ticker.
    pub fn new(config: HostConfig) -> Result<Self, HostError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_stack)
            .async_stack_size(config.max_stack + (1 << 20));
        let tier = Tier::new(Compiler::Cranelift, &wasm)?
            .ok_or_else(|| HostError("Cranelift is not available".into()))?;
        let quick = match config.tiering.quick_from {
            u64::MAX => None,
            _ => Tier::new(Compiler::Winch, &wasm)?,
        };
        let cache = match config.cache_dir {
            Some(dir) => Some(Arc::new(
                Cache::new(dir.clone(), config.cache_max_bytes)
                    .map_err(|e| HostError(format!("cache directory {}: {e}", dir.display())))?,
            )),
            None => None,
        };
        let tier_up = match &quick {
            Some(quick) if config.tiering.tier_up => {
                Some(TierUp::start(tier.clone(), quick.clone(), cache.clone()))
            }
            _ => None,
        };
        let engines = std::iter::once(&tier).chain(&quick);
        Ok(Self {
            _ticker: Ticker::start(engines.map(|t| t.engine.clone()).collect()),
            quick,
            tier,
            tiering: config.tiering,
            tier_up,
            cache,
            loading: Loading::new(config.files),
            loaded: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            max_stack: config.max_stack,
            kept: config.store_dir.map(kept::Kept::new),
            pulled: Mutex::default(),
        })
    }
}

/// Advances the engines' epochs every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engines: Vec<Engine>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engines.iter().for_each(Engine::increment_epoch);
                }
            })
            .expect("the epoch ticker thread starts");
        Self { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
