//! Memory is bounded per call, not per linear memory: every memory and table of every core
//! instance a component creates, and what it makes the host hold (wasi:http `fields`), count
//! against one `limits.memory`; instances, memories and tables are capped. Components with
//! many memories, tables or instances do not come from Rust: they are written here in WAT.

use serde_json::json;
use sluice::types::{Failure, LimitKind};

use crate::support::{host, input, output, run_testkit, tight};

use super::limit;

/// A component exporting the task interface (its `run` has the wrong type: these calls end
/// while instantiating, or fail when the export is checked) whose instantiation creates
/// `instances` core instances of the module `module`.
fn component(module: &str, instances: usize) -> Vec<u8> {
    let instantiate: String = (0..instances)
        .map(|i| format!("(core instance $i{i} (instantiate $m))\n"))
        .collect();
    wat::parse_str(format!(
        r#"(component
            (core module $m {module} (func (export "run")))
            {instantiate}
            (func $run (canon lift (core func $i0 "run")))
            (instance $task (export "run" (func $run)))
            (export "sluice:plugin/task@0.1.0" (instance $task)))"#
    ))
    .unwrap()
}

/// Runs the component as a task with a memory limit of 32 MiB.
async fn run_component(bytes: &[u8]) -> Failure {
    let plugin = host()
        .load_bytes(bytes, "bomb.wasm".into())
        .unwrap_or_else(|e| panic!("the bomb loads as a task plugin: {e}"));
    let mut sandbox = tight();
    sandbox.limits.memory = 32 << 20;
    let run = host().run_task(&plugin, sandbox, &input(json!({}))).await;
    run.result.expect_err("the bomb's call fails")
}

/// The memory limit of 32 MiB, named with its setting (and which of its caps, in brackets).
fn assert_memory_limit(failure: &Failure) {
    assert_eq!(limit(failure), LimitKind::Memory, "{failure}");
    let message = failure.to_string();
    assert!(message.contains("memory limit of 32 MiB"), "{message}");
    assert!(message.contains("`limits.memory`"), "{message}");
}

#[tokio::test]
async fn memories_of_several_instances_share_one_memory_limit() {
    // 20 MiB each: one fits under 32 MiB, two together do not.
    let one = run_component(&component("(memory 320)", 1)).await;
    assert!(
        !matches!(one, Failure::Limit(_)),
        "one memory of 20 MiB fits 32 MiB: {one}"
    );
    let two = run_component(&component("(memory 320)", 2)).await;
    assert_memory_limit(&two);
}

#[tokio::test]
async fn many_memories_are_refused() {
    let module = "(memory 1) ".repeat(20);
    let failure = run_component(&component(&module, 1)).await;
    assert_memory_limit(&failure);
    let caps = "(in at most 16 instances, 2 memories and 8 tables)";
    assert!(failure.to_string().contains(caps), "{failure}");
}

#[tokio::test]
async fn tables_count_against_the_memory_limit() {
    // 4 Mi elements of a pointer each are 32 MiB.
    let big = run_component(&component("(table 4194304 funcref)", 1)).await;
    assert_memory_limit(&big);
    // 50 tables of 1 Mi elements each: too many tables before any is made.
    let module = "(table 1048576 funcref) ".repeat(50);
    assert_memory_limit(&run_component(&component(&module, 1)).await);
    // Small tables in several instances are fine.
    let small = run_component(&component("(table 16 funcref)", 2)).await;
    assert!(!matches!(small, Failure::Limit(_)), "{small}");
}

#[tokio::test]
async fn many_instances_are_refused() {
    assert_memory_limit(&run_component(&component("", 100)).await);
}

#[tokio::test]
async fn a_wasi_http_fields_bomb_hits_the_memory_limit_and_the_host_carries_on() {
    let mut sandbox = tight();
    sandbox.limits.memory = 32 << 20;
    let run = run_testkit(
        json!({"action": "fields", "count": 100_000, "bytes": 0}),
        sandbox.clone(),
    )
    .await;
    let failure = run.result.unwrap_err();
    assert_memory_limit(&failure);
    assert!(
        failure
            .to_string()
            .contains("(256 host resources at a time)"),
        "{failure}"
    );

    // Fat fields: each may hold only what the host charges for it.
    let run = run_testkit(
        json!({"action": "fields", "count": 4_000, "bytes": 128 << 10}),
        sandbox,
    )
    .await;
    let failure = run.result.unwrap_err();
    assert_memory_limit(&failure);
    assert!(
        failure
            .to_string()
            .contains("a wasi:http `fields` holds at most 16 KiB"),
        "{failure}"
    );

    // A plugin's ordinary use of fields, and the next task, are untouched.
    let few = run_testkit(
        json!({"action": "fields", "count": 100, "bytes": 8 << 10}),
        tight(),
    )
    .await;
    assert_eq!(output(&few.result.unwrap(), "held"), Some("100"));
}
