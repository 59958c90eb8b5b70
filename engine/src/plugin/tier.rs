//! Two compilers, one plugin. Cranelift makes fast code slowly: an 18 MiB Python component
//! takes 6–12 s on two cores. Winch, wasmtime's baseline compiler, makes slower code 3–5x
//! faster. A host
//! holds a [`Tier`] for each (its engine, and a linker of the same imports); a component of at
//! least [`Tiering::quick_from`] bytes with no cached compilation compiles with Winch first
//! and runs that. With [`Tiering::tier_up`] (a long-lived process: `serve`), one background
//! thread then compiles it with Cranelift, caches that, and switches the loaded plugin to it:
//! calls already running finish on the Winch code they started with, later calls get
//! Cranelift's. Both compilations run under the same sandbox, limits and epoch ticker.

use std::hash::{Hash, Hasher};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Weak};
use std::time::Instant;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Strategy};

use super::cache::Cache;
use super::sandbox::State;
use super::{HostError, Plugin, bindings, fs};

/// Components at least this large compile with Winch first, by default: 4 MiB. Cranelift
/// compiles 1.5–3 MiB a second on two cores, so under it (Rust plugins, the built-ins) it takes
/// at most ~3 s; Python and JavaScript components (13–18 MiB) are over it.
pub const DEFAULT_QUICK_FROM: u64 = 4 << 20;

/// Which compiler made a plugin's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compiler {
    /// Optimising: every plugin ends up here, or starts here when small.
    Cranelift,
    /// Baseline: a fast first run of a large component.
    Winch,
}

impl Compiler {
    /// Its name, as `inspect` and the cache's file names give it.
    pub fn name(self) -> &'static str {
        match self {
            Compiler::Cranelift => "cranelift",
            Compiler::Winch => "winch",
        }
    }
}

/// How a host compiles a component it has no cached compilation of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiering {
    /// Components of at least this many bytes compile with Winch first; `u64::MAX`: none do.
    pub quick_from: u64,
    /// After a Winch compilation (or a Winch one found in the cache), compile with Cranelift
    /// in the background and switch to it. For processes that live long enough to use it: a
    /// one-shot command would exit before it finished, so it keeps Winch's (cached) code.
    pub tier_up: bool,
}

impl Tiering {
    /// Cranelift only (`sluice plugin compile`).
    pub const OPTIMIZED: Self = Self {
        quick_from: u64::MAX,
        tier_up: false,
    };
}

impl Default for Tiering {
    fn default() -> Self {
        Self {
            quick_from: DEFAULT_QUICK_FROM,
            tier_up: false,
        }
    }
}

/// One compiler's engine and a linker of everything the host offers (WASI 0.2, wasi:http,
/// the log import, the file guards).
#[derive(Clone)]
pub(super) struct Tier {
    pub(super) compiler: Compiler,
    pub(super) engine: Engine,
    pub(super) linker: Linker<State>,
    /// What names and tags its compilations in the cache: the compiler and the engine's
    /// `precompile_compatibility_hash`.
    pub(super) cache_key: String,
}

impl Tier {
    /// `config` with `compiler`; `None` for Winch where it cannot run (not x86-64 or
    /// aarch64, or a CPU without what it needs).
    pub(super) fn new(compiler: Compiler, config: &Config) -> Result<Option<Self>, HostError> {
        let mut config = config.clone();
        config.strategy(match compiler {
            Compiler::Cranelift => Strategy::Cranelift,
            Compiler::Winch => Strategy::Winch,
        });
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(e) if compiler == Compiler::Winch => {
                tracing::debug!(error = %e, "no Winch here: every plugin compiles with Cranelift");
                return Ok(None);
            }
            Err(e) => return Err(HostError(e.to_string())),
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| {
                bindings::Engine::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            })
            .and_then(|()| fs::guard(&mut linker))
            .map_err(|e| HostError(e.to_string()))?;
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Some(Self {
            cache_key: format!("{}-{:016x}", compiler.name(), hasher.finish()),
            compiler,
            engine,
            linker,
        }))
    }
}

/// A plugin to compile with Cranelift, and its bytes.
struct Job {
    plugin: Weak<Plugin>,
    bytes: Arc<[u8]>,
}

/// The background thread that compiles Winch-compiled plugins with Cranelift, one at a time
/// (a compilation uses every core already). It ends when the host is dropped.
pub(super) struct TierUp {
    jobs: Sender<Job>,
}

impl TierUp {
    pub(super) fn start(tier: Tier, quick: Tier, cache: Option<Arc<Cache>>) -> Self {
        let (jobs, queue) = channel();
        let spawned = std::thread::Builder::new()
            .name("sluice-tier-up".into())
            .spawn(move || work(&queue, &tier, &quick, cache.as_deref()));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no background compiler thread: plugins keep Winch's code");
        }
        Self { jobs }
    }

    /// Queues `plugin` (already loaded with Winch's code) for Cranelift.
    pub(super) fn request(&self, plugin: &Arc<Plugin>, bytes: &[u8]) {
        let job = Job {
            plugin: Arc::downgrade(plugin),
            bytes: bytes.into(),
        };
        // A thread that could not start leaves the plugin on Winch: slower, still correct.
        let _ = self.jobs.send(job);
    }
}

fn work(queue: &Receiver<Job>, tier: &Tier, quick: &Tier, cache: Option<&Cache>) {
    while let Ok(job) = queue.recv() {
        let Some(plugin) = job.plugin.upgrade() else {
            continue;
        };
        let started = Instant::now();
        let compiled = Component::new(&tier.engine, &job.bytes)
            .map_err(|e| format!("{e:#}"))
            .and_then(|component| {
                let code = super::load::link(tier, &component, plugin.origin())
                    .map_err(|e| e.to_string())?;
                Ok((component, code))
            });
        match compiled {
            Ok((component, code)) => {
                if let Some(cache) = cache {
                    cache.store(tier, &plugin.digest(), &component);
                    cache.remove(quick, &plugin.digest());
                }
                plugin.replace_code(code);
                tracing::info!(
                    plugin = %plugin.origin(),
                    elapsed = ?started.elapsed(),
                    "optimised plugin in the background: later calls run Cranelift's code"
                );
            }
            Err(reason) => tracing::warn!(
                plugin = %plugin.origin(),
                %reason,
                "Cranelift could not compile a plugin Winch compiled: it keeps Winch's code"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{HostConfig, LoadError, PluginHost};

    #[test]
    fn what_winch_refuses_cranelift_compiles() {
        let host = PluginHost::new(HostConfig {
            tiering: Tiering {
                quick_from: 0,
                tier_up: false,
            },
            ..HostConfig::default()
        })
        .unwrap();
        // Tail calls: Cranelift compiles them, Winch does not.
        let tail_call = wat::parse_str(
            "(component (core module (func $f (return_call $f))) (core instance (instantiate 0)))",
        )
        .unwrap();
        let quick = host.quick.as_ref().expect("Winch runs on this machine");
        assert!(Component::new(&quick.engine, &tail_call).is_err());
        assert!(Component::new(&host.tier.engine, &tail_call).is_ok());
        // So the load goes on to what Cranelift's compilation shows: no plugin world.
        let e = host.load_bytes(&tail_call, "tail.wasm".into()).unwrap_err();
        assert!(matches!(e, LoadError::NoPluginExports(_)), "{e}");
    }
}
