//! `template`: tokens in plain files, values by key path in JSON, YAML and TOML, a missing
//! variable reported with its file and line, binary files copied as they are, and secret values
//! written where they belong but never logged.

use std::path::Path;

use serde_json::json;
use sluice::types::{Access, TaskInput};

use super::{failure, sandbox, variable};
use crate::support::{host, input, load, output};

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A workspace holding `config/`, and an empty target.
struct Dirs {
    _tmp: tempfile::TempDir,
    workspace: std::path::PathBuf,
    target: std::path::PathBuf,
}

impl Dirs {
    fn new(files: &[(&str, &[u8])]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (workspace, target) = (tmp.path().join("ws"), tmp.path().join("target"));
        for (rel, content) in files {
            write(&workspace.join("config").join(rel), content);
        }
        std::fs::create_dir_all(&target).unwrap();
        Self {
            _tmp: tmp,
            workspace,
            target,
        }
    }

    fn sandbox(&self) -> sluice::plugin::Sandbox {
        sandbox(
            &[],
            &[
                (&self.workspace, "/workspace", Access::ReadOnly),
                (&self.target, "/target", Access::ReadWrite),
            ],
        )
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.target.join(rel)).unwrap()
    }
}

fn task(config: serde_json::Value) -> TaskInput {
    let mut config = config;
    let fields = config.as_object_mut().unwrap();
    fields.insert("from".into(), json!("config"));
    fields.insert("to".into(), json!("/target"));
    let mut task = input(config);
    task.context.workspace = Some("/workspace".into());
    task.variables = vec![
        variable("site-url", "https://dev.example.com", false),
        variable("db-password", "hunter2-secret", true),
        variable("replicas", "3", false),
        variable("deploy.id", "d-9", false),
    ];
    task
}

#[tokio::test]
async fn renders_tokens_and_sets_keys_in_json_yaml_and_toml() {
    let dirs = Dirs::new(&[
        ("site.conf", b"url = #{site-url}#\n# keep #{ not a token\nid = #{ deploy.id }#\n"),
        (
            "appsettings.json",
            b"{\n  \"ConnectionStrings\": {\n    \"Default\": \"Server=localhost\"\n  },\n  \"Replicas\": 1\n}\n",
        ),
        ("k8s/deploy.yaml", b"spec:\n  replicas: 1\n  image: web:#{deploy.id}#\n"),
        ("app.toml", b"# settings\n[db]\npassword = \"changeme\" # set per stage\n"),
        ("logo.png", b"\x89PNG\r\n\x1a\n#{site-url}#\xff\xfe"),
    ]);
    let run = host()
        .run_task(
            &load("template"),
            dirs.sandbox(),
            &task(json!({"set": {
                "ConnectionStrings.Default": "Server=db;Password=hunter2-secret",
                "Replicas": "3",
                "spec.replicas": "3",
                "db.password": "hunter2-secret",
            }})),
        )
        .await;
    let report = run.result.unwrap();
    assert_eq!(
        dirs.read("site.conf"),
        "url = https://dev.example.com\n# keep #{ not a token\nid = d-9\n"
    );
    assert_eq!(
        dirs.read("appsettings.json"),
        "{\n  \"ConnectionStrings\": {\n    \"Default\": \"Server=db;Password=hunter2-secret\"\n  },\n  \"Replicas\": 3\n}\n"
    );
    assert_eq!(
        dirs.read("k8s/deploy.yaml"),
        "spec:\n  replicas: 3\n  image: web:d-9\n"
    );
    assert_eq!(
        dirs.read("app.toml"),
        "# settings\n[db]\npassword = \"hunter2-secret\" # set per stage\n"
    );
    assert_eq!(
        std::fs::read(dirs.target.join("logo.png")).unwrap(),
        b"\x89PNG\r\n\x1a\n#{site-url}#\xff\xfe",
        "a binary file is copied as it is"
    );
    assert_eq!(output(&report, "files-rendered"), Some("4"));
    assert_eq!(output(&report, "tokens-replaced"), Some("3"));
    assert_eq!(output(&report, "keys-replaced"), Some("4"));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let log: Vec<&str> = run.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(
        log.iter()
            .any(|l| l.contains("rendered site.conf: 2 tokens (deploy.id, site-url)")),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("hunter2")),
        "values are never logged: {log:?}"
    );
}

#[tokio::test]
async fn a_missing_variable_fails_with_file_line_and_token_unless_told_otherwise() {
    let files: &[(&str, &[u8])] = &[(
        "nested/app.ini",
        b"[app]\nurl = #{site-url}#\nkey = #{api-key}#\n",
    )];
    let dirs = Dirs::new(files);
    let run = host()
        .run_task(&load("template"), dirs.sandbox(), &task(json!({})))
        .await;
    let message = failure(run.result);
    assert!(
        message.starts_with("nested/app.ini:3: `#{api-key}#` names a variable that is not set"),
        "{message}"
    );
    assert!(
        !dirs.target.join("nested/app.ini").exists(),
        "nothing half-rendered is written"
    );

    for (missing, expected) in [("keep", "key = #{api-key}#\n"), ("empty", "key = \n")] {
        let run = host()
            .run_task(
                &load("template"),
                dirs.sandbox(),
                &task(json!({"missing": missing})),
            )
            .await;
        run.result.unwrap();
        let text = dirs.read("nested/app.ini");
        assert!(text.ends_with(expected), "{missing}: {text}");
    }
}

#[tokio::test]
async fn dollar_tokens_globs_and_bad_input() {
    let dirs = Dirs::new(&[
        ("a.txt", b"$(site-url) and #{site-url}#"),
        ("skip/b.txt", b"$(nope)"),
        ("bad.json", b"{ not json"),
    ]);
    let run = host()
        .run_task(
            &load("template"),
            dirs.sandbox(),
            &task(json!({"tokens": "dollar", "files": ["*.txt"], "exclude": ["skip/**"]})),
        )
        .await;
    let report = run.result.unwrap();
    assert_eq!(
        dirs.read("a.txt"),
        "https://dev.example.com and #{site-url}#"
    );
    assert!(!dirs.target.join("skip/b.txt").exists());
    assert_eq!(output(&report, "files-rendered"), Some("1"));

    let run = host()
        .run_task(
            &load("template"),
            dirs.sandbox(),
            &task(json!({"files": ["*.json"], "set": {"a.b": "1"}})),
        )
        .await;
    let message = failure(run.result);
    assert!(message.starts_with("bad.json: not valid JSON"), "{message}");

    for (config, expected) in [
        (json!({"tokens": "percent"}), "unknown variant `percent`"),
        (json!({"set": {"a..b": "x"}}), "empty segment"),
        (json!({"files": ["a["]}), "`include` pattern `a[`"),
        (json!({"colour": "red"}), "unknown field `colour`"),
    ] {
        let run = host()
            .run_task(&load("template"), dirs.sandbox(), &task(config))
            .await;
        let message = failure(run.result);
        assert!(message.contains(expected), "{expected}: {message}");
    }

    // A key path no file has is a warning, not a silent no-op.
    let run = host()
        .run_task(
            &load("template"),
            dirs.sandbox(),
            &task(json!({"files": ["a.txt"], "set": {"Logging.Level": "debug"}})),
        )
        .await;
    let report = run.result.unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("`Logging.Level` is in no transformed file")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test]
async fn writes_only_inside_its_grant() {
    let dirs = Dirs::new(&[("a.txt", b"#{site-url}#")]);
    let mut config = task(json!({}));
    config.config = json!({"from": "config", "to": "/elsewhere"}).to_string();
    let run = host()
        .run_task(&load("template"), dirs.sandbox(), &config)
        .await;
    let message = failure(run.result);
    assert!(message.contains("cannot write a.txt"), "{message}");
}

#[tokio::test]
async fn key_paths_index_arrays_keep_layout_and_refuse_a_table() {
    let dirs = Dirs::new(&[
        (
            "servers.json",
            b"{\n    \"servers\": [\n        { \"host\": \"a\", \"port\": 80, \"tls\": false }\n    ]\n}",
        ),
        ("hosts.yml", b"hosts:\n- name: a\n  weight: 1\n- name: b\n  weight: 1\n"),
        ("pool.toml", b"[[pool]]\nname = \"a\" # first\n\n[[pool]]\nname = \"b\"\nsize = 2\n"),
    ]);
    let set = json!({
        "servers.0.host": "db.prod", "servers.0.port": "5432", "servers.0.tls": "true",
        "hosts.1.weight": "5", "pool.1.size": "8", "pool.0.name": "first",
    });
    let run = host()
        .run_task(
            &load("template"),
            dirs.sandbox(),
            &task(json!({"set": set})),
        )
        .await;
    assert_eq!(output(&run.result.unwrap(), "keys-replaced"), Some("6"));
    assert_eq!(
        dirs.read("servers.json"),
        "{\n    \"servers\": [\n        {\n            \"host\": \"db.prod\",\n            \"port\": 5432,\n            \"tls\": true\n        }\n    ]\n}",
        "four-space indent kept, numbers and booleans stay typed, no newline added"
    );
    assert_eq!(
        dirs.read("hosts.yml"),
        "hosts:\n- name: a\n  weight: 1\n- name: b\n  weight: 5\n"
    );
    assert_eq!(
        dirs.read("pool.toml"),
        "[[pool]]\nname = \"first\" # first\n\n[[pool]]\nname = \"b\"\nsize = 8\n"
    );

    let run = host()
        .run_task(
            &load("template"),
            dirs.sandbox(),
            &task(json!({"set": {"servers.0": "x"}})),
        )
        .await;
    let message = failure(run.result);
    assert!(
        message.starts_with("servers.json: `servers.0` is a table or an array here"),
        "{message}"
    );
}
