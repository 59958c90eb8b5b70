//! The plugins under test and one plugin host for the whole binary: loading them, the
//! context and input a release gives a task, tight sandboxes, a report's outputs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sluice::plugin::{HostConfig, Plugin, PluginHost, PluginRef, Sandbox};
use sluice::types::{Context, Invocation, Limits, TaskInput, TaskReport};

pub const TESTKIT: &str = env!("SLUICE_PLUGIN_TESTKIT");
pub const TEMPLATE: &str = env!("SLUICE_PLUGIN_EXAMPLE_TEMPLATE");

/// One host for every test: compiling a component once is the point of `InstancePre`.
pub fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new(HostConfig::default()).expect("the host starts"))
}

pub fn load(reference: &str) -> Arc<Plugin> {
    host()
        .load(&PluginRef::parse(reference, std::path::Path::new("/")))
        .unwrap_or_else(|e| panic!("loading {reference}: {e}"))
}

pub fn testkit() -> Arc<Plugin> {
    load(TESTKIT)
}

/// A context like the one a release gives.
pub fn context() -> Context {
    Context {
        pipeline: "space-game".into(),
        release: "space-game-7".into(),
        release_number: 7,
        stage: "dev".into(),
        attempt: 1,
        artifacts: Vec::new(),
        workspace: None,
    }
}

pub fn input(config: serde_json::Value) -> TaskInput {
    TaskInput {
        config: config.to_string(),
        context: context(),
        variables: Vec::new(),
    }
}

/// Runs the testkit as a task with `config` in `sandbox`.
pub async fn run_testkit(config: serde_json::Value, sandbox: Sandbox) -> Invocation<TaskReport> {
    host().run_task(&testkit(), sandbox, &input(config)).await
}

/// A sandbox with no grants and tight limits, so hostile tests finish quickly.
pub fn tight() -> Sandbox {
    Sandbox {
        limits: Limits {
            memory: 64 << 20,
            timeout: Duration::from_secs(20),
            log: 256 << 10,
            output: 256 << 10,
        },
        ..Sandbox::default()
    }
}

/// The output variable `name` of a report.
pub fn output<'a>(report: &'a TaskReport, name: &str) -> Option<&'a str> {
    report
        .outputs
        .iter()
        .find(|o| o.name == name)
        .map(|o| o.value.as_str())
}
