//! Limits and failure kinds: time, memory, stack, log and output limits each name themselves
//! (the host carries on), and plugin errors, panics and traps stay distinct.

use std::time::Duration;

use serde_json::json;
use sluice::plugin::Sandbox;
use sluice::types::{Failure, LimitKind, PluginError};

use crate::support::{output, run_testkit, tight};

use super::limit;

#[tokio::test]
async fn an_infinite_loop_hits_the_time_limit_and_the_host_carries_on() {
    let mut sandbox = tight();
    sandbox.limits.timeout = Duration::from_millis(300);
    let run = run_testkit(json!({"action": "spin"}), sandbox).await;
    let failure = run.result.unwrap_err();
    assert_eq!(limit(&failure), LimitKind::Time);
    assert!(
        failure.to_string().contains("`timeout` on the task"),
        "{failure}"
    );

    let next = run_testkit(json!({"action": "noop"}), tight()).await;
    assert!(next.result.is_ok(), "the host keeps serving other tasks");
}

#[tokio::test]
async fn a_guest_blocked_in_a_host_call_still_times_out() {
    let mut sandbox = tight();
    sandbox.limits.timeout = Duration::from_millis(200);
    let run = run_testkit(json!({"action": "sleep", "ms": 60_000}), sandbox).await;
    assert_eq!(limit(&run.result.unwrap_err()), LimitKind::Time);
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let mut sandbox = tight();
    sandbox.limits.memory = 32 << 20;
    let run = run_testkit(json!({"action": "alloc", "mib": 1024}), sandbox).await;
    let failure = run.result.unwrap_err();
    assert_eq!(limit(&failure), LimitKind::Memory);
    assert!(
        failure.to_string().contains("memory limit of 32 MiB"),
        "{failure}"
    );
    assert!(failure.to_string().contains("`limits.memory`"), "{failure}");

    let fits = run_testkit(json!({"action": "alloc", "mib": 8}), tight()).await;
    assert_eq!(output(&fits.result.unwrap(), "allocated"), Some("8"));
}

#[tokio::test]
async fn deep_recursion_hits_the_stack_limit() {
    let run = run_testkit(json!({"action": "recurse"}), tight()).await;
    let failure = run.result.unwrap_err();
    assert_eq!(limit(&failure), LimitKind::Stack);
    assert!(failure.to_string().contains("stack limit"), "{failure}");
}

#[tokio::test]
async fn a_log_flood_hits_the_log_limit() {
    let run = run_testkit(
        json!({"action": "log", "count": 100_000, "size": 100}),
        tight(),
    )
    .await;
    let failure = run.result.unwrap_err();
    assert_eq!(limit(&failure), LimitKind::Log);
    assert!(
        failure.to_string().contains("log limit of 256 KiB"),
        "{failure}"
    );
    let kept: usize = run.logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= 256 << 10, "the stored log stays within the limit");
}

#[tokio::test]
async fn a_stdout_flood_hits_the_log_limit() {
    let run = run_testkit(
        json!({"action": "print", "count": 100_000, "size": 100}),
        tight(),
    )
    .await;
    assert_eq!(limit(&run.result.unwrap_err()), LimitKind::Log);
}

#[tokio::test]
async fn a_huge_output_hits_the_output_limit() {
    let run = run_testkit(json!({"action": "huge-output", "mib": 4}), tight()).await;
    let failure = run.result.unwrap_err();
    assert_eq!(limit(&failure), LimitKind::Output);
    assert!(failure.to_string().contains("`limits.output`"), "{failure}");
}

#[tokio::test]
async fn plugin_errors_panics_and_traps_are_distinct() {
    let leaky = Sandbox {
        mask: vec!["hunter2".into()],
        ..tight()
    };
    let run = run_testkit(
        json!({"action": "fail", "message": "password hunter2 rejected"}),
        leaky,
    )
    .await;
    assert_eq!(
        run.result.unwrap_err().to_string(),
        r#"plugin failed: "password *** rejected""#
    );

    let failed = run_testkit(json!({"action": "fail", "message": "disk full"}), tight()).await;
    let failed = failed.result.unwrap_err();
    assert_eq!(
        failed,
        Failure::Plugin(PluginError::Failed("disk full".into()))
    );
    assert_eq!(failed.to_string(), r#"plugin failed: "disk full""#);

    let config = run_testkit(json!({"action": "no-such-action"}), tight()).await;
    match config.result.unwrap_err() {
        Failure::Plugin(PluginError::InvalidConfig(m)) => {
            assert!(m.contains("no-such-action"), "{m}")
        }
        other => panic!("expected invalid configuration, got {other}"),
    }

    let panicked = run_testkit(json!({"action": "panic", "message": "oh no"}), tight()).await;
    match panicked.result.unwrap_err() {
        Failure::Panic(m) => assert!(m.starts_with("oh no (at ") && m.contains("lib.rs"), "{m}"),
        other => panic!("expected a panic, got {other}"),
    }

    let trapped = run_testkit(json!({"action": "trap"}), tight()).await;
    match trapped.result.unwrap_err() {
        Failure::Trap(m) => assert!(m.contains("unreachable"), "{m}"),
        other => panic!("expected a trap, got {other}"),
    }
}
