//! Calling a plugin: `run_task`, `evaluate_gate`, `list_versions` and `fetch` on a fresh store
//! bounded by the call's limits (the timeout around the whole call is here), secrets masked in
//! what comes back, and a failed call told apart: a limit, a panic, a trap or a host fault.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Store, Trap};

use super::bindings::task;
use super::log::TaskLog;
use super::sandbox::State;
use super::{Plugin, PluginHost, Sandbox, World};
use crate::types::{
    Failure, Health, Invocation, LimitExceeded, LimitKind, PluginError, TaskInput, TaskReport,
    Version, format_bytes,
};

impl PluginHost {
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
                super::limits::bound(&mut store);
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
                    Ok(Err(error)) => Err(super::limits::recognise(&error, limits.memory)
                        .map_or_else(|| self.classify(&error, &log), Failure::Limit)),
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
