//! Calling a plugin: `run_task`, `evaluate_gate`, `list_versions` and `fetch` on a fresh store
//! bounded by the call's limits (the timeout around the whole call is here), secrets masked in
//! what comes back, and a failed call told apart: a limit, an exit, a panic, a trap, a broken
//! ABI or a host fault, each in one line that says it was the plugin.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Store, Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use super::bindings::task;
use super::log::{TaskLog, truncate};
use super::sandbox::State;
use super::{Code, Plugin, PluginHost, Sandbox, World};
use crate::types::limits::item_cost;
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
        let outcome = match State::new(&grants, limits.memory, log.clone()) {
            Err(e) => Err(Failure::Host(e.to_string())),
            Ok(state) => {
                let code = plugin.code();
                let mut store = Store::new(code.pre.engine(), state);
                super::limits::bound(&mut store);
                store.set_epoch_deadline(1);
                store.epoch_deadline_async_yield_and_update(1);
                let run = invoke(&mut store, &code, call);
                match tokio::time::timeout(limits.timeout, run).await {
                    Err(_elapsed) => Err(Failure::Limit(LimitExceeded::new(
                        LimitKind::Time,
                        format!("{:?}", limits.timeout),
                    ))),
                    Ok(Ok(returned)) => Ok(returned),
                    Ok(Err(fault)) => {
                        let (Fault::Start(error) | Fault::Call(error)) = &fault;
                        Err(super::limits::recognise(error, limits.memory)
                            .map_or_else(|| self.classify(&fault, &log), Failure::Limit))
                    }
                }
                // The store, and with it everything the plugin held, is dropped here.
            }
        };
        log.finish();
        let result = match outcome {
            // A call that hit the log limit fails naming it, also when the plugin ignored the
            // refused writes and went on to return (a result or an error of its own).
            Ok(_) if log.limit_hit().is_some() => Err(Failure::Limit(log.limit_hit().unwrap())),
            Ok(Ok(returned)) => {
                check_output(returned, limits.output).map(|returned| mask_returned(returned, &log))
            }
            Ok(Err(error)) => Err(Failure::Plugin(mask_error(error, &log))),
            Err(failure) => Err(failure),
        };
        Invocation {
            result,
            logs: log.take_lines(),
            elapsed: started.elapsed(),
        }
    }

    /// Tells a limit, an exit, a panic, a trap, a broken ABI and a host fault apart, each in
    /// one line (never a backtrace).
    fn classify(&self, fault: &Fault, log: &TaskLog) -> Failure {
        let (error, during_call) = match fault {
            Fault::Start(error) => (error, false),
            Fault::Call(error) => (error, true),
        };
        if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
            return Failure::Limit(limit.clone());
        }
        if let Some(limit) = log.limit_hit() {
            return Failure::Limit(limit);
        }
        if let Some(exit) = error.downcast_ref::<I32Exit>() {
            return Failure::Exit(exit.0);
        }
        let trap = error.downcast_ref::<Trap>();
        if trap == Some(&Trap::StackOverflow) {
            return Failure::Limit(LimitExceeded::new(
                LimitKind::Stack,
                format_bytes(self.max_stack as u64),
            ));
        }
        if let Some(uncaught) = log.uncaught(trap == Some(&Trap::UnreachableCodeReached)) {
            return Failure::Uncaught(uncaught);
        }
        if let Some(panic) = log.panic() {
            return Failure::Panic(panic);
        }
        let place = error
            .downcast_ref::<WasmBacktrace>()
            .and_then(|bt| bt.frames().iter().find_map(|f| f.func_name()))
            .map(|name| {
                let name = format!("{:#}", rustc_demangle::demangle(name));
                format!(" (in function {})", log.one_line(&name))
            })
            .unwrap_or_default();
        match trap {
            Some(trap) => {
                let trap = trap.to_string();
                let trap = trap.strip_prefix("wasm trap: ").unwrap_or(&trap);
                Failure::Trap(format!("{trap}{place}"))
            }
            None if during_call => Failure::Abi(format!("{}{place}", reason(error, log))),
            None => Failure::Host(reason(error, log)),
        }
    }
}

/// An error's causes, outermost first, without the backtrace (a context of many lines): one
/// line.
fn reason(error: &wasmtime::Error, log: &TaskLog) -> String {
    let causes: Vec<String> = error
        .chain()
        .map(ToString::to_string)
        .filter(|cause| !cause.starts_with("error while executing at wasm backtrace"))
        .collect();
    log.one_line(&causes.join(": "))
}

/// Why an export call did not return: while starting the plugin (instantiating it, finding
/// its export), or during the call itself (the plugin's own code and what it passes the host).
enum Fault {
    Start(wasmtime::Error),
    Call(wasmtime::Error),
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

/// Instantiates the plugin's `code` in `store` and calls one export.
async fn invoke(
    store: &mut Store<State>,
    code: &Code,
    call: Call<'_>,
) -> Result<Result<Returned, PluginError>, Fault> {
    let instance = code
        .pre
        .instantiate_async(&mut *store)
        .await
        .map_err(Fault::Start)?;
    let start = Fault::Start;
    Ok(match call {
        Call::Task(input) => {
            let guest = code
                .task
                .as_ref()
                .ok_or_else(|| start(missing(World::Task)))?;
            let input = task::TaskInput {
                config: input.config.clone(),
                context: (&input.context).into(),
                variables: input.variables.iter().map(Into::into).collect(),
            };
            let guest = guest.load(&mut *store, &instance).map_err(start)?;
            guest
                .call_run(&mut *store, &input)
                .await
                .map_err(Fault::Call)?
                .map(|r| Returned::Task(r.into()))
                .map_err(Into::into)
        }
        Call::Gate(input) => {
            let guest = code
                .gate
                .as_ref()
                .ok_or_else(|| start(missing(World::Gate)))?;
            let context = (&input.context).into();
            let variables: Vec<_> = input.variables.iter().map(Into::into).collect();
            let guest = guest.load(&mut *store, &instance).map_err(start)?;
            guest
                .call_evaluate(&mut *store, &input.config, &context, &variables)
                .await
                .map_err(Fault::Call)?
                .map(|h| Returned::Health(h.into()))
                .map_err(Into::into)
        }
        Call::List(config) => {
            let guest = code
                .source
                .as_ref()
                .ok_or_else(|| start(missing(World::ArtifactSource)))?;
            let guest = guest.load(&mut *store, &instance).map_err(start)?;
            guest
                .call_list_versions(&mut *store, config)
                .await
                .map_err(Fault::Call)?
                .map(|v| Returned::Versions(v.into_iter().map(Into::into).collect()))
                .map_err(Into::into)
        }
        Call::Fetch {
            config,
            version,
            destination,
        } => {
            let guest = code
                .source
                .as_ref()
                .ok_or_else(|| start(missing(World::ArtifactSource)))?;
            let guest = guest.load(&mut *store, &instance).map_err(start)?;
            guest
                .call_fetch(&mut *store, config, version, destination)
                .await
                .map_err(Fault::Call)?
                .map(|v| Returned::Version(v.into()))
                .map_err(Into::into)
        }
    })
}

/// A plugin may copy a secret into what it returns: outputs that contain one (in their name
/// or their value) become secret and their names are masked, and text that is shown to people
/// (warnings, reasons) is masked.
fn mask_returned(returned: Returned, log: &TaskLog) -> Returned {
    match returned {
        Returned::Task(mut report) => {
            for warning in &mut report.warnings {
                *warning = log.masked(warning);
            }
            for output in &mut report.outputs {
                if log.reveals_secret(&output.name) {
                    output.name = log.masked(&output.name);
                    output.secret = true;
                }
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

/// The plugin's own error text: masked and cut (its `Display` quotes it, on one line).
fn mask_error(error: PluginError, log: &TaskLog) -> PluginError {
    let kept = |m: &str| {
        let masked = log.masked(m);
        truncate(&masked).to_owned()
    };
    match error {
        PluginError::InvalidConfig(m) => PluginError::InvalidConfig(kept(&m)),
        PluginError::Failed(m) => PluginError::Failed(kept(&m)),
    }
}

/// Fails a call whose returned value costs more than the output limit: every warning, output
/// variable and version costs its text plus [`ITEM_OVERHEAD`](crate::types::limits::ITEM_OVERHEAD),
/// and so does each of a version's tags and metadata entries.
fn check_output(returned: Returned, limit: u64) -> Result<Returned, Failure> {
    fn sum<T>(items: &[T], cost: impl Fn(&T) -> u64) -> u64 {
        items
            .iter()
            .fold(0u64, |total, item| total.saturating_add(cost(item)))
    }
    fn version_cost(v: &Version) -> u64 {
        let text = v.id.len()
            + v.branch.as_ref().map_or(0, String::len)
            + v.commit.as_ref().map_or(0, String::len);
        item_cost(text)
            .saturating_add(sum(&v.tags, |t| item_cost(t.len())))
            .saturating_add(sum(&v.metadata, |(k, x)| item_cost(k.len() + x.len())))
    }
    let cost = match &returned {
        Returned::Task(r) => sum(&r.warnings, |w| item_cost(w.len()))
            .saturating_add(sum(&r.outputs, |o| item_cost(o.name.len() + o.value.len()))),
        Returned::Health(Health::Unhealthy(why)) => item_cost(why.len()),
        Returned::Health(Health::Healthy) => 0,
        Returned::Versions(versions) => sum(versions, version_cost),
        Returned::Version(version) => version_cost(version),
    };
    if cost > limit {
        return Err(Failure::Limit(LimitExceeded::new(
            LimitKind::Output,
            format_bytes(limit),
        )));
    }
    Ok(returned)
}
