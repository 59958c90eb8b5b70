//! The sandbox: every hostile behaviour is contained, every limit names itself, and the four
//! kinds of failure (plugin error, limit, panic, trap) stay distinct.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice::plugin::Sandbox;
use sluice::types::{
    Access, Failure, Grants, Health, Level, LimitKind, PluginError, Source, Variable,
};

use crate::support::{TestServer, host, input, output, run_testkit, testkit, tight};

/// A granted directory next to a secret outside it.
struct Fixture {
    _root: tempfile::TempDir,
    granted: std::path::PathBuf,
    secret: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let granted = root.path().join("granted");
    std::fs::create_dir(&granted).unwrap();
    std::fs::write(granted.join("inside.txt"), "inside").unwrap();
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET").unwrap();
    Fixture {
        _root: root,
        granted,
        secret,
    }
}

fn with_dir(granted: &std::path::Path, access: Access) -> Sandbox {
    Sandbox {
        grants: Grants::none().dir(granted, "/data", access).unwrap(),
        ..tight()
    }
}

fn plugin_failure(failure: &Failure) -> &str {
    match failure {
        Failure::Plugin(PluginError::Failed(message)) => message,
        other => panic!("expected the plugin to report a failure, got: {other}"),
    }
}

fn limit(failure: &Failure) -> LimitKind {
    match failure {
        Failure::Limit(limit) => limit.kind,
        other => panic!("expected a limit, got: {other}"),
    }
}

#[tokio::test]
async fn granted_files_are_readable() {
    let f = fixture();
    let run = run_testkit(
        json!({"action": "read", "path": "/data/inside.txt"}),
        with_dir(&f.granted, Access::ReadOnly),
    )
    .await;
    let report = run.result.unwrap();
    assert_eq!(output(&report, "content"), Some("inside"));
}

#[tokio::test]
async fn reads_outside_the_grants_are_denied() {
    let f = fixture();
    std::os::unix::fs::symlink(&f.secret, f.granted.join("link")).unwrap();
    std::os::unix::fs::symlink(f.secret.parent().unwrap(), f.granted.join("up")).unwrap();
    let escapes = [
        "/data/../secret.txt".to_owned(),
        "/data/link".to_owned(),
        "/data/up/secret.txt".to_owned(),
        f.secret.display().to_string(),
        "/etc/passwd".to_owned(),
        "../secret.txt".to_owned(),
    ];
    for path in escapes {
        let run = run_testkit(
            json!({"action": "read", "path": path}),
            with_dir(&f.granted, Access::ReadOnly),
        )
        .await;
        let failure = run
            .result
            .as_ref()
            .expect_err(&format!("reading {path} must fail"));
        let message = plugin_failure(failure);
        assert!(message.contains(&path), "message names the path: {message}");
        let logs = format!("{:?}", run.logs);
        assert!(
            !logs.contains("TOP-SECRET"),
            "the secret leaked into the log"
        );
    }
}

#[tokio::test]
async fn listing_outside_the_grants_is_denied() {
    let f = fixture();
    for path in ["/", "/data/..", "/tmp"] {
        let run = run_testkit(
            json!({"action": "list", "path": path}),
            with_dir(&f.granted, Access::ReadOnly),
        )
        .await;
        assert!(run.result.is_err(), "listing {path} must fail");
    }
}

#[tokio::test]
async fn writes_into_a_read_only_grant_are_denied() {
    let f = fixture();
    let run = run_testkit(
        json!({"action": "write", "path": "/data/new.txt", "content": "x"}),
        with_dir(&f.granted, Access::ReadOnly),
    )
    .await;
    let message = plugin_failure(run.result.as_ref().unwrap_err());
    assert!(message.contains("/data/new.txt"), "{message}");
    assert!(!f.granted.join("new.txt").exists());

    let run = run_testkit(
        json!({"action": "write", "path": "/data/inside.txt", "content": "overwritten"}),
        with_dir(&f.granted, Access::ReadOnly),
    )
    .await;
    assert!(run.result.is_err());
    assert_eq!(
        std::fs::read_to_string(f.granted.join("inside.txt")).unwrap(),
        "inside"
    );
}

#[tokio::test]
async fn writes_into_a_read_write_grant_work() {
    let f = fixture();
    let run = run_testkit(
        json!({"action": "write", "path": "/data/new.txt", "content": "written"}),
        with_dir(&f.granted, Access::ReadWrite),
    )
    .await;
    run.result.unwrap();
    assert_eq!(
        std::fs::read_to_string(f.granted.join("new.txt")).unwrap(),
        "written"
    );
}

#[tokio::test]
async fn writes_cannot_escape_a_read_write_grant() {
    let f = fixture();
    std::os::unix::fs::symlink(f.secret.parent().unwrap(), f.granted.join("up")).unwrap();
    for path in ["/data/../escaped.txt", "/data/up/escaped.txt"] {
        let run = run_testkit(
            json!({"action": "write", "path": path, "content": "x"}),
            with_dir(&f.granted, Access::ReadWrite),
        )
        .await;
        assert!(run.result.is_err(), "writing {path} must fail");
    }
    assert!(!f.secret.parent().unwrap().join("escaped.txt").exists());
}

#[tokio::test]
async fn only_granted_environment_variables_are_visible() {
    // SAFETY-free: the test process's own environment holds PATH; the plugin must not see it.
    assert!(std::env::var("PATH").is_ok());
    let sandbox = Sandbox {
        grants: Grants::none().env("DEPLOY_TARGET", "dev"),
        ..tight()
    };
    let run = run_testkit(
        json!({"action": "env", "name": "DEPLOY_TARGET"}),
        sandbox.clone(),
    )
    .await;
    assert_eq!(output(&run.result.unwrap(), "value"), Some("dev"));

    let run = run_testkit(json!({"action": "env", "name": "PATH"}), sandbox).await;
    let message = plugin_failure(run.result.as_ref().unwrap_err());
    assert!(message.contains("PATH"), "{message}");
}

#[tokio::test]
async fn outbound_http_goes_only_to_granted_hosts() {
    let server = TestServer::start("ok");
    let url = server.url("/");

    let denied = run_testkit(json!({"action": "http", "url": url}), tight()).await;
    let message = plugin_failure(denied.result.as_ref().unwrap_err());
    assert!(message.contains("not granted"), "{message}");
    let note = denied
        .logs
        .iter()
        .find(|l| l.source == Source::Host)
        .expect("the host notes the denial in the task's log");
    assert!(
        note.message.contains(&server.addr.to_string()),
        "{}",
        note.message
    );
    assert_eq!(
        server.hits(),
        0,
        "the denied request never reached the server"
    );

    let other_port = Sandbox {
        grants: Grants::none().host("127.0.0.1:1").unwrap(),
        ..tight()
    };
    let run = run_testkit(json!({"action": "http", "url": url}), other_port).await;
    assert!(run.result.is_err());
    assert_eq!(server.hits(), 0);

    let granted = Sandbox {
        grants: Grants::none().host(server.addr.to_string()).unwrap(),
        ..tight()
    };
    let run = run_testkit(json!({"action": "http", "url": url}), granted).await;
    assert_eq!(output(&run.result.unwrap(), "status"), Some("200"));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn sockets_are_closed_even_to_granted_http_hosts() {
    let server = TestServer::start("ok");
    let sandbox = Sandbox {
        grants: Grants::none().host(server.addr.to_string()).unwrap(),
        ..tight()
    };
    let run = run_testkit(
        json!({"action": "connect", "addr": server.addr.to_string()}),
        sandbox,
    )
    .await;
    let message = plugin_failure(run.result.as_ref().unwrap_err());
    assert!(message.contains("cannot connect"), "{message}");
    assert_eq!(server.hits(), 0);
}

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
    assert_eq!(run.result.unwrap_err().to_string(), "password *** rejected");

    let failed = run_testkit(json!({"action": "fail", "message": "disk full"}), tight()).await;
    let failed = failed.result.unwrap_err();
    assert_eq!(
        failed,
        Failure::Plugin(PluginError::Failed("disk full".into()))
    );
    assert_eq!(failed.to_string(), "disk full");

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
        },
        Variable {
            name: "token".into(),
            value: "s3cr3t-value".into(),
            secret: true,
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
