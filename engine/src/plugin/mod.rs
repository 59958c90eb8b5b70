//! The plugin host: runs WebAssembly components in a sandbox. **The only module that imports
//! wasmtime** (and the WASI crates); the rest of the engine sees [`PluginHost`], [`Plugin`] and
//! the plain types of [`api`].
//!
//! A call builds a fresh store from its [`Sandbox`] (grants, limits, log), instantiates the
//! plugin through its cached `InstancePre`, calls one export, and drops the store. Limits:
//! memory through a `ResourceLimiter`, time through epoch interruption (the guest yields every
//! tick) plus a timeout around the whole call (which also covers a guest blocked in a host call),
//! log volume in the log import and stdio, output size after the call, stack engine-wide.

mod bindings;
mod cache;
mod limits;
mod log;
mod sandbox;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, Store, Trap};

use crate::builtin::{BUILTINS, builtin};
use crate::types::{
    Failure, Grants, Health, Invocation, LimitExceeded, LimitKind, Limits, PluginError, TaskInput,
    TaskReport, Version,
};
pub use log::LogSink;

use crate::types::{format_bytes, grants};
use bindings::{artifact_source, gate, task};
use cache::Cache;
use log::TaskLog;
use sandbox::State;

/// How often the engine's epoch advances: the granularity of time limits and of the guest
/// yielding to other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide settings of the host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// The WebAssembly stack a call may use, in bytes.
    pub max_stack: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_stack: 512 << 10,
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

/// What identifies a file's content without reading it: path, size, modification and change
/// times (nanoseconds) and inode. Writing or replacing the file changes at least one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FileKey {
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

/// Where a plugin comes from: a built-in name or a component file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    /// A plugin embedded in the binary, by name.
    Builtin(String),
    /// A component file.
    File(PathBuf),
}

impl PluginRef {
    /// `copy` names a built-in; anything with a `/` or ending in `.wasm` is a file, relative
    /// to `base`.
    pub fn parse(text: &str, base: &Path) -> Self {
        if text.contains('/') || text.ends_with(".wasm") {
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
    engine: Engine,
    linker: Linker<State>,
    cache: Option<Cache>,
    loaded: Mutex<HashMap<Digest, Arc<Plugin>>>,
    /// Files already hashed, by what identifies their content on disk: an unchanged file is
    /// not read again; a replaced or rewritten one changes its key and is hashed anew.
    files: Mutex<HashMap<FileKey, Arc<Plugin>>>,
    max_stack: usize,
    _ticker: Ticker,
}

impl PluginHost {
    /// Starts a host: one wasmtime engine, its linker (WASI 0.2, wasi:http, the log import),
    /// the compiled-artifact cache and the epoch ticker.
    pub fn new(config: HostConfig) -> Result<Self, HostError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_stack)
            .async_stack_size(config.max_stack + (1 << 20));
        let engine = Engine::new(&wasm).map_err(|e| HostError(e.to_string()))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| {
                bindings::Engine::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            })
            .map_err(|e| HostError(e.to_string()))?;

        let cache = match config.cache_dir {
            Some(dir) => Some(
                Cache::new(dir.clone(), &engine)
                    .map_err(|e| HostError(format!("cache directory {}: {e}", dir.display())))?,
            ),
            None => None,
        };
        Ok(Self {
            _ticker: Ticker::start(engine.clone()),
            engine,
            linker,
            cache,
            loaded: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            max_stack: config.max_stack,
        })
    }

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

    /// Runs a task plugin once.
    pub async fn run_task(
        &self,
        plugin: &Plugin,
        sandbox: Sandbox,
        input: &TaskInput,
    ) -> Invocation<TaskReport> {
        self.call(plugin, sandbox, Call::Task(input))
            .await
            .map(|r| match r {
                Returned::Task(report) => report,
                _ => unreachable!("a task call returns a report"),
            })
    }

    /// Evaluates a gate plugin once.
    pub async fn evaluate_gate(
        &self,
        plugin: &Plugin,
        sandbox: Sandbox,
        input: &TaskInput,
    ) -> Invocation<Health> {
        self.call(plugin, sandbox, Call::Gate(input))
            .await
            .map(|r| match r {
                Returned::Health(health) => health,
                _ => unreachable!("a gate call returns a health"),
            })
    }

    /// Lists the versions an artifact source offers.
    pub async fn list_versions(
        &self,
        plugin: &Plugin,
        sandbox: Sandbox,
        config: &str,
    ) -> Invocation<Vec<Version>> {
        self.call(plugin, sandbox, Call::List(config))
            .await
            .map(|r| match r {
                Returned::Versions(versions) => versions,
                _ => unreachable!("a list call returns versions"),
            })
    }

    /// Fetches one version into `destination` (a guest path the sandbox grants read-write).
    pub async fn fetch(
        &self,
        plugin: &Plugin,
        sandbox: Sandbox,
        config: &str,
        version: &str,
        destination: &str,
    ) -> Invocation<Version> {
        let call = Call::Fetch {
            config,
            version,
            destination,
        };
        self.call(plugin, sandbox, call).await.map(|r| match r {
            Returned::Version(version) => version,
            _ => unreachable!("a fetch call returns a version"),
        })
    }

    async fn call(
        &self,
        plugin: &Plugin,
        sandbox: Sandbox,
        call: Call<'_>,
    ) -> Invocation<Returned> {
        let started = Instant::now();
        let Sandbox {
            grants,
            limits,
            mask,
            sink,
        } = sandbox;
        let log = Arc::new(TaskLog::new(limits.log, mask, sink));
        let result = match State::new(&grants, limits.memory, log.clone()) {
            Err(e) => Err(Failure::Host(e.to_string())),
            Ok(state) => {
                let mut store = Store::new(&self.engine, state);
                store.limiter(|state| &mut state.limiter);
                store.set_epoch_deadline(1);
                store.epoch_deadline_async_yield_and_update(1);
                let run = invoke(&mut store, plugin, call);
                match tokio::time::timeout(limits.timeout, run).await {
                    Err(_elapsed) => Err(Failure::Limit(LimitExceeded::new(
                        LimitKind::Time,
                        format!("{:?}", limits.timeout),
                    ))),
                    Ok(Ok(Ok(returned))) => check_output(returned, limits.output)
                        .map(|returned| mask_returned(returned, &log)),
                    Ok(Ok(Err(error))) => Err(Failure::Plugin(mask_error(error, &log))),
                    Ok(Err(error)) => Err(self.classify(&error, &log)),
                }
                // The store, and with it everything the plugin held, is dropped here.
            }
        };
        log.finish();
        Invocation {
            result,
            logs: log.take_lines(),
            elapsed: started.elapsed(),
        }
    }

    /// Tells a limit, a panic, a trap and a host fault apart.
    fn classify(&self, error: &wasmtime::Error, log: &TaskLog) -> Failure {
        if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
            return Failure::Limit(limit.clone());
        }
        if let Some(limit) = log.limit_hit() {
            return Failure::Limit(limit);
        }
        let trap = error.downcast_ref::<Trap>();
        if trap == Some(&Trap::StackOverflow) {
            return Failure::Limit(LimitExceeded::new(
                LimitKind::Stack,
                format_bytes(self.max_stack as u64),
            ));
        }
        if let Some(panic) = log.panic() {
            return Failure::Panic(panic);
        }
        match trap {
            Some(trap) => {
                let frames = error
                    .downcast_ref::<wasmtime::WasmBacktrace>()
                    .map(|bt| {
                        bt.frames()
                            .iter()
                            .filter_map(|f| f.func_name())
                            .take(4)
                            .collect::<Vec<_>>()
                            .join(" <- ")
                    })
                    .filter(|s| !s.is_empty());
                match frames {
                    Some(frames) => Failure::Trap(format!("{trap} in {frames}")),
                    None => Failure::Trap(trap.to_string()),
                }
            }
            None => Failure::Host(format!("{error:#}")),
        }
    }
}

/// One export call.
enum Call<'a> {
    Task(&'a TaskInput),
    Gate(&'a TaskInput),
    List(&'a str),
    Fetch {
        config: &'a str,
        version: &'a str,
        destination: &'a str,
    },
}

/// What an export call returned.
enum Returned {
    Task(TaskReport),
    Health(Health),
    Versions(Vec<Version>),
    Version(Version),
}

impl<T> Invocation<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Invocation<U> {
        Invocation {
            result: self.result.map(f),
            logs: self.logs,
            elapsed: self.elapsed,
        }
    }
}

fn missing(world: World) -> wasmtime::Error {
    wasmtime::Error::msg(format!("the plugin does not export the {world} world"))
}

/// Instantiates `plugin` in `store` and calls one export.
async fn invoke(
    store: &mut Store<State>,
    plugin: &Plugin,
    call: Call<'_>,
) -> wasmtime::Result<Result<Returned, PluginError>> {
    let instance = plugin.pre.instantiate_async(&mut *store).await?;
    Ok(match call {
        Call::Task(input) => {
            let guest = plugin.task.as_ref().ok_or_else(|| missing(World::Task))?;
            let input = task::TaskInput {
                config: input.config.clone(),
                context: (&input.context).into(),
                variables: input.variables.iter().map(Into::into).collect(),
            };
            let guest = guest.load(&mut *store, &instance)?;
            guest
                .call_run(&mut *store, &input)
                .await?
                .map(|r| Returned::Task(r.into()))
                .map_err(Into::into)
        }
        Call::Gate(input) => {
            let guest = plugin.gate.as_ref().ok_or_else(|| missing(World::Gate))?;
            let context = (&input.context).into();
            let variables: Vec<_> = input.variables.iter().map(Into::into).collect();
            let guest = guest.load(&mut *store, &instance)?;
            guest
                .call_evaluate(&mut *store, &input.config, &context, &variables)
                .await?
                .map(|h| Returned::Health(h.into()))
                .map_err(Into::into)
        }
        Call::List(config) => {
            let guest = plugin
                .source
                .as_ref()
                .ok_or_else(|| missing(World::ArtifactSource))?;
            let guest = guest.load(&mut *store, &instance)?;
            guest
                .call_list_versions(&mut *store, config)
                .await?
                .map(|v| Returned::Versions(v.into_iter().map(Into::into).collect()))
                .map_err(Into::into)
        }
        Call::Fetch {
            config,
            version,
            destination,
        } => {
            let guest = plugin
                .source
                .as_ref()
                .ok_or_else(|| missing(World::ArtifactSource))?;
            let guest = guest.load(&mut *store, &instance)?;
            guest
                .call_fetch(&mut *store, config, version, destination)
                .await?
                .map(|v| Returned::Version(v.into()))
                .map_err(Into::into)
        }
    })
}

/// A plugin may copy a secret into what it returns: outputs that contain one become secret,
/// and text that is shown to people (warnings, reasons) is masked.
fn mask_returned(returned: Returned, log: &TaskLog) -> Returned {
    match returned {
        Returned::Task(mut report) => {
            for warning in &mut report.warnings {
                *warning = log.masked(warning);
            }
            for output in &mut report.outputs {
                output.secret |= log.reveals_secret(&output.value);
            }
            Returned::Task(report)
        }
        Returned::Health(Health::Unhealthy(why)) => {
            Returned::Health(Health::Unhealthy(log.masked(&why)))
        }
        other => other,
    }
}

fn mask_error(error: PluginError, log: &TaskLog) -> PluginError {
    match error {
        PluginError::InvalidConfig(m) => PluginError::InvalidConfig(log.masked(&m)),
        PluginError::Failed(m) => PluginError::Failed(log.masked(&m)),
    }
}

/// Fails a call whose returned value is larger than the output limit.
fn check_output(returned: Returned, limit: u64) -> Result<Returned, Failure> {
    fn version_size(v: &Version) -> usize {
        v.id.len()
            + v.branch.as_ref().map_or(0, String::len)
            + v.commit.as_ref().map_or(0, String::len)
            + v.tags.iter().map(String::len).sum::<usize>()
            + v.metadata
                .iter()
                .map(|(k, x)| k.len() + x.len())
                .sum::<usize>()
    }
    let size = match &returned {
        Returned::Task(r) => {
            r.warnings.iter().map(String::len).sum::<usize>()
                + r.outputs
                    .iter()
                    .map(|o| o.name.len() + o.value.len())
                    .sum::<usize>()
        }
        Returned::Health(Health::Unhealthy(why)) => why.len(),
        Returned::Health(Health::Healthy) => 0,
        Returned::Versions(versions) => versions.iter().map(version_size).sum(),
        Returned::Version(version) => version_size(version),
    };
    if size as u64 > limit {
        return Err(Failure::Limit(LimitExceeded::new(
            LimitKind::Output,
            format_bytes(limit),
        )));
    }
    Ok(returned)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
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
