//! Grants: files, environment variables and outbound HTTP reach a plugin only as granted,
//! and sockets stay closed.

use serde_json::json;
use sluice::plugin::Sandbox;
use sluice::types::{Access, Grants, Source};

use crate::support::{TestServer, output, run_testkit, tight};

use super::{fixture, plugin_failure, with_dir};

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
