//! What a task sees and reports: warnings, its context and variables (secrets masked), live
//! log events, gate health, and a hundred tasks at once not interfering.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice::plugin::Sandbox;
use sluice::types::{Access, Health, Level, LimitKind, Variable};

use crate::support::{host, input, output, run_testkit, testkit, tight};

use super::{fixture, limit, with_dir};

#[tokio::test]
async fn warnings_mean_succeeded_with_issues() {
    let run = run_testkit(
        json!({"action": "warn", "warning": "3 files skipped"}),
        tight(),
    )
    .await;
    assert_eq!(run.result.unwrap().warnings, ["3 files skipped"]);
}

#[tokio::test]
async fn context_and_variables_reach_the_plugin_and_secrets_are_masked() {
    let mut task = input(json!({"action": "echo"}));
    task.variables = vec![
        Variable {
            name: "region".into(),
            value: "eu-west".into(),
            secret: false,
            sealed: None,
        },
        Variable {
            name: "token".into(),
            value: "s3cr3t-value".into(),
            secret: true,
            sealed: None,
        },
    ];
    let sandbox = Sandbox {
        mask: vec!["s3cr3t-value".into()],
        ..tight()
    };
    let run = host().run_task(&testkit(), sandbox, &task).await;
    let report = run.result.unwrap();
    assert_eq!(output(&report, "release"), Some("space-game-7"));
    assert_eq!(output(&report, "stage"), Some("dev"));
    assert_eq!(output(&report, "var.region"), Some("eu-west"));
    let copied = report
        .outputs
        .iter()
        .find(|o| o.name == "var.token")
        .unwrap();
    assert!(
        copied.secret,
        "an output carrying a secret is itself secret"
    );
    assert!(
        !report
            .outputs
            .iter()
            .find(|o| o.name == "var.region")
            .unwrap()
            .secret
    );
    let lines: Vec<&str> = run.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(lines.contains(&"region is eu-west"), "{lines:?}");
    assert!(lines.contains(&"token is ***"), "{lines:?}");
    assert!(run.logs.iter().all(|l| !l.message.contains("s3cr3t-value")));
    assert!(run.logs.iter().all(|l| l.level == Level::Info));
}

#[tokio::test]
async fn live_log_events_arrive_while_the_task_runs() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    let sandbox = Sandbox {
        sink: Some(Arc::new(move |event: &sluice::types::LogEvent| {
            sink_seen.lock().unwrap().push(event.clone());
        })),
        ..tight()
    };
    let run = run_testkit(json!({"action": "log", "count": 3, "size": 4}), sandbox).await;
    run.result.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(run.logs.len(), 3);
}

#[tokio::test]
async fn gates_report_health() {
    let healthy = host()
        .evaluate_gate(&testkit(), tight(), &input(json!({"healthy": true})))
        .await;
    assert_eq!(healthy.result, Ok(Health::Healthy));
    let unhealthy = host()
        .evaluate_gate(&testkit(), tight(), &input(json!({"healthy": false})))
        .await;
    assert_eq!(
        unhealthy.result,
        Ok(Health::Unhealthy("the test said so".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_tasks_do_not_interfere() {
    let f = fixture();
    let mut handles = Vec::new();
    for i in 0..100u32 {
        let granted = f.granted.clone();
        handles.push(tokio::spawn(async move {
            match i % 10 {
                // Hostile neighbours: a spinner and a memory bomb.
                0 => {
                    let mut sandbox = tight();
                    sandbox.limits.timeout = Duration::from_millis(200);
                    let run = run_testkit(json!({"action": "spin"}), sandbox).await;
                    assert_eq!(limit(&run.result.unwrap_err()), LimitKind::Time);
                }
                1 => {
                    let mut sandbox = tight();
                    sandbox.limits.memory = 16 << 20;
                    let run = run_testkit(json!({"action": "alloc", "mib": 512}), sandbox).await;
                    assert_eq!(limit(&run.result.unwrap_err()), LimitKind::Memory);
                }
                // Each writer writes its own file with its own content.
                2 | 3 => {
                    let path = format!("/data/task-{i}.txt");
                    let sandbox = with_dir(&granted, Access::ReadWrite);
                    let run = run_testkit(
                        json!({"action": "write", "path": path, "content": format!("from {i}")}),
                        sandbox,
                    )
                    .await;
                    run.result.unwrap();
                }
                // Everyone else echoes its own variable back.
                _ => {
                    let mut task = input(json!({"action": "echo"}));
                    task.variables = vec![Variable {
                        name: "me".into(),
                        value: format!("task-{i}"),
                        secret: false,
                        sealed: None,
                    }];
                    let run = host().run_task(&testkit(), tight(), &task).await;
                    let report = run.result.unwrap();
                    assert_eq!(
                        output(&report, "var.me"),
                        Some(format!("task-{i}").as_str())
                    );
                    assert_eq!(run.logs.len(), 1, "a task sees only its own log lines");
                }
            }
        }));
    }
    for handle in handles {
        handle.await.expect("no task panicked");
    }
    for i in (0..100).filter(|i| matches!(i % 10, 2 | 3)) {
        let content = std::fs::read_to_string(f.granted.join(format!("task-{i}.txt"))).unwrap();
        assert_eq!(content, format!("from {i}"));
    }
}
