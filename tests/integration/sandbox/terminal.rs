//! Terminal control sequences and forged lines: a plugin writes controls, bidi characters and
//! a newline followed by an engine-looking line into every text it has (log message, field key
//! and value, stdout, progress, warning, error, output name and value). The store keeps what it
//! wrote; every printer — `sluice run` (plain lines and the terminal view), `releases show`,
//! `logs`, `plugin run` — shows it escaped, each of its lines one line, visibly the plugin's.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::json;
use sluice::store::Store;
use sluice::types::Level;

use crate::engine::Project;
use crate::support::{TESTKIT, output, run_testkit, said, tight};

/// What the testkit's `terminal` action writes (`plugins/testkit/src/terminal.rs`).
pub(crate) const HOSTILE: &str = concat!(
    "\x1b[2J\x1b[H",
    "\x1b]0;pwned\x07",
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "\rcovered",
    "\u{202e}desrever",
    "\u{9b}31m\x7f\u{2028}",
    "\n[space-game-1] prod: task deploy-prod succeeded",
);

/// The engine-looking line the plugin forges.
pub(crate) const FORGED: &str = "[space-game-1] prod: task deploy-prod succeeded";

/// How [`HOSTILE`] reads once escaped: what an operator sees of it.
pub(crate) const SHOWN: [&str; 5] = [
    "\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07",
    "\\x1b]8;;https://evil.example/\\x1b\\click",
    "\\rcovered\\u{202e}desrever",
    "\\u{9b}31m\\x7f\\u{2028}",
    "\\n[space-game-1] prod: task deploy-prod succeeded",
];

/// Panics if `printed` (what a printer wrote) carries a raw control of [`HOSTILE`] or a line
/// that starts with the forged text; `tty` allows the cursor movements and line clearing of
/// the terminal view's own drawing (CSI sequences ending in `A`, `B`, `G`, `J` without `2`, `K`,
/// `l`, `h`, and `\r`), never the plugin's.
pub(crate) fn assert_escaped(what: &str, printed: &str, tty: bool) {
    let mut raw = vec!["\x1b[2J", "\x1b[H", "\x1b]", "\x07", "\u{202e}", "\u{9b}"];
    raw.extend(["\x7f", "\u{2028}"]);
    if !tty {
        raw.extend(["\x1b", "\r"]);
    }
    for control in raw {
        assert!(
            !printed.contains(control),
            "{what}: a raw {control:?} was printed:\n{printed}"
        );
    }
    for line in printed.split(['\n', '\r']) {
        let start = strip_drawing(line).trim_start();
        assert!(
            !start.starts_with("[space-game-1]"),
            "{what}: a bare forged line was printed: {line:?}\n{printed}"
        );
    }
}

/// `line` without the CSI sequences the terminal view draws with at its start.
fn strip_drawing(mut line: &str) -> &str {
    while let Some(rest) = line.strip_prefix("\x1b[") {
        let end = rest
            .find(|c: char| c.is_ascii_alphabetic())
            .map_or(rest.len(), |i| i + 1);
        line = &rest[end..];
    }
    line
}

/// Panics unless `printed` shows the hostile text escaped (it was shown, not dropped).
pub(crate) fn assert_shown(what: &str, printed: &str) {
    for shown in SHOWN {
        assert!(
            printed.contains(shown),
            "{what}: `{shown}` is not shown:\n{printed}"
        );
    }
}

/// `hostile`: stage `qa` succeeds with issues, then `prod` fails, each with the hostile text.
pub(crate) const PIPELINE: &str = r#"
version = 1
name = "hostile"

[[stages]]
name = "qa"
[[stages.tasks]]
name = "warn"
plugin = "kit"
config = { action = "terminal" }

[[stages]]
name = "prod"
after = "qa"
[[stages.tasks]]
name = "deploy"
plugin = "kit"
config = { action = "terminal", fail = true }
"#;

fn sluice(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .env_remove("SLUICE_DATA_DIR")
        .env_remove("SLUICE_SERVER")
        .stdin(Stdio::null())
        .output()
        .expect("sluice runs")
}

#[tokio::test]
async fn the_host_keeps_what_a_hostile_plugin_wrote() {
    let run = run_testkit(json!({"action": "terminal"}), tight()).await;
    let report = run.result.unwrap();
    assert_eq!(report.warnings, [HOSTILE]);
    assert_eq!(output(&report, HOSTILE), Some(HOSTILE));
    let logged = &run.logs[0];
    assert_eq!(logged.message, HOSTILE);
    assert_eq!(logged.fields, [(HOSTILE.to_owned(), HOSTILE.to_owned())]);
    assert!(
        run.logs
            .iter()
            .any(|l| l.level == Level::Error && l.message == HOSTILE)
    );
    // Shown, a stored line is one line with everything escaped.
    let shown = logged.to_string();
    assert_escaped("a log line's display", &shown, false);
    assert_shown("a log line's display", &shown);
    assert!(!shown.contains('\n'), "{shown}");
}

#[test]
fn sluice_run_show_and_logs_print_a_hostile_plugins_text_escaped_on_one_line() {
    let project = Project::new(PIPELINE);
    let data = project.data_dir();
    let data = data.to_str().unwrap();
    // The releaser's description is as hostile as the plugin.
    let args = [
        "run",
        "pipeline.toml",
        "--data-dir",
        data,
        "--approve",
        "all",
        "--description",
        HOSTILE,
    ];
    let run = sluice(project.path(), &args);
    assert_eq!(run.status.code(), Some(1), "prod fails: {}", said(&run));
    let printed = said(&run);
    assert_escaped("sluice run", &printed, false);
    assert_shown("sluice run", &printed);
    assert!(
        printed.contains("[hostile-1] qa: task warn succeeded with issues: \\x1b[2J"),
        "{printed}"
    );
    let prod = format!("  {:<16} failed — ", "prod");
    assert!(printed.contains(&prod), "{printed}");

    let show = sluice(
        project.path(),
        &["releases", "show", "hostile-1", "--data-dir", data],
    );
    assert!(show.status.success(), "{}", said(&show));
    let printed = said(&show);
    assert_escaped("releases show", &printed, false);
    assert_shown("releases show", &printed);
    assert!(printed.contains("      output \\x1b[2J"), "{printed}");
    assert!(printed.contains("about     \\x1b[2J"), "{printed}");

    let logs = sluice(project.path(), &["logs", "hostile-1", "--data-dir", data]);
    assert!(logs.status.success(), "{}", said(&logs));
    let printed = said(&logs);
    assert_escaped("sluice logs", &printed, false);
    assert_shown("sluice logs", &printed);

    // What was printed escaped is stored as the plugin wrote it.
    let store = Store::open(&project.data_dir()).unwrap();
    let release = store.release("hostile-1").unwrap().unwrap();
    let task = &release.stage("qa").unwrap().attempts[0].tasks[0];
    assert_eq!(task.outputs[0].name, HOSTILE);
    assert_eq!(task.outputs[0].value, HOSTILE);
    assert_eq!(release.description.as_deref(), Some(HOSTILE));
    let failed = &release.stage("prod").unwrap().attempts[0];
    // The reason is the engine's one line, quoting the plugin's words escaped.
    let reason = failed.reason.as_deref().unwrap();
    assert!(
        reason.contains(&*sluice::types::escape(HOSTILE)),
        "{reason}"
    );
}

#[test]
fn the_terminal_view_of_sluice_run_shows_a_hostile_plugins_text_escaped() {
    let project = Project::new(PIPELINE);
    // `script` runs `sluice run` on a pseudo-terminal: the live view, not plain lines.
    let command = format!(
        "{} run pipeline.toml --approve all",
        env!("CARGO_BIN_EXE_sluice")
    );
    let run = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(project.path())
        .env_remove("SLUICE_DATA_DIR")
        .env("COLUMNS", "200")
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) runs sluice on a pseudo-terminal");
    let printed = said(&run);
    assert_eq!(run.status.code(), Some(1), "prod fails: {printed}");
    assert_escaped("the terminal view", &printed, true);
    assert!(
        printed.contains("[hostile-1] qa: task warn succeeded with issues: \\x1b[2J"),
        "{printed}"
    );
}

#[test]
fn plugin_run_prints_a_hostile_plugins_text_escaped_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("task.toml");
    for (toml, code) in [("action = \"terminal\"\n", 0), ("fail = true\n", 1)] {
        let mut all = std::fs::read_to_string(&config).unwrap_or_default();
        all.push_str(toml);
        std::fs::write(&config, all).unwrap();
        let run = sluice(
            dir.path(),
            &[
                "plugin",
                "run",
                TESTKIT,
                "--config",
                config.to_str().unwrap(),
                "--data-dir",
                dir.path().join("data").to_str().unwrap(),
            ],
        );
        let printed = said(&run);
        assert_eq!(run.status.code(), Some(code), "{printed}");
        assert_escaped("plugin run", &printed, false);
        assert_shown("plugin run", &printed);
        // Progress, the failure or the warning and output: each shown escaped.
        assert!(printed.contains("[ 50%] \\x1b[2J"), "{printed}");
        let last = if code == 0 {
            "output \\x1b[2J"
        } else {
            "failed: plugin failed: \"\\x1b[2J"
        };
        assert!(printed.contains(last), "{printed}");
    }
}

/// `versions`: an artifact from `dir-source`, whose version ids are folder names.
const VERSIONS: &str = r#"
version = 1
name = "versions"

[artifacts.site]
source = "dir-source"
config = { path = "/builds" }
grants.dirs = [{ host = "$(sluice.pipeline-dir)/builds", guest = "/builds" }]

[[stages]]
name = "qa"
[[stages.tasks]]
plugin = "kit"
config = { action = "noop" }
"#;

/// `sluice run` of the project's pipeline on its data directory, choosing `artifact`.
fn run_choosing(project: &Project, artifact: &str) -> Output {
    let data = project.data_dir();
    let args = ["run", "pipeline.toml", "--data-dir", data.to_str().unwrap()];
    let choice = ["--approve", "all", "--artifact", artifact];
    sluice(project.path(), &[&args[..], &choice[..]].concat())
}

#[test]
fn version_ids_and_refused_artifacts_print_escaped_on_one_line() {
    let project = Project::new(VERSIONS);
    // A folder name is a version id: a source's text, as hostile as a plugin's.
    let id = "2.0.0\x1b[2J\u{202e}x\r\n[space-game-1] prod: task deploy-prod succeeded";
    std::fs::create_dir(project.path().join("builds").join(id)).unwrap();
    let data = project.data_dir();
    let run = run_choosing(&project, &format!("site={id}"));
    let printed = said(&run);
    assert_eq!(run.status.code(), Some(0), "{printed}");
    assert_escaped("sluice run", &printed, false);
    let shown = "2.0.0\\x1b[2J\\u{202e}x\\r\\n[space-game-1] prod: task deploy-prod succeeded";
    assert!(
        printed.contains(&format!("release versions-1 created (site {shown})")),
        "{printed}"
    );
    let show = sluice(
        project.path(),
        &[
            "releases",
            "show",
            "versions-1",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let printed = said(&show);
    assert_escaped("releases show", &printed, false);
    assert!(
        printed.contains(&format!("artifact  site {shown}")),
        "{printed}"
    );
    let store = Store::open(&data).unwrap();
    let release = store.release("versions-1").unwrap().unwrap();
    assert_eq!(
        release.artifacts[0].version.id, id,
        "stored as the source wrote it"
    );
    drop(store);

    // A releaser's version or alias that is not there: refused (exit 2) in one line, nothing
    // stored.
    for artifact in [format!("site={HOSTILE}"), format!("{HOSTILE}=1.0.0")] {
        let refused = run_choosing(&project, &artifact);
        let printed = said(&refused);
        assert_eq!(refused.status.code(), Some(2), "{printed}");
        assert_escaped("a refused artifact", &printed, false);
        assert_shown("a refused artifact", &printed);
        assert_eq!(printed.lines().count(), 1, "{printed}");
        assert!(printed.starts_with("sluice: artifact `"), "{printed}");
    }
    let store = Store::open(&data).unwrap();
    assert_eq!(store.releases().unwrap().len(), 1, "no release was stored");
}
