//! A plugin's faults read as the plugin's, in one line: an exit, a trap (with the function it
//! happened in), a value the component ABI forbids, a panic, and a plugin's own error text —
//! quoted, so that a plugin cannot make its words look like the engine's ("engine crashed").

use serde_json::json;
use sluice::types::{Failure, PluginError};

use crate::support::{run_testkit, tight};

fn assert_one_line(text: &str) {
    assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
}

#[tokio::test]
async fn an_exit_reads_as_the_plugin_exiting_with_its_status() {
    // WASI 0.2's `exit` carries success or failure only: `exit(3)` arrives as status 1.
    for (status, arrives) in [(3, 1), (0, 0)] {
        let run = run_testkit(json!({"action": "exit", "status": status}), tight()).await;
        let failure = run.result.unwrap_err();
        assert_eq!(failure, Failure::Exit(arrives));
        assert_eq!(
            failure.to_string(),
            format!("plugin exited with status {arrives} instead of returning a result")
        );
    }
    let next = run_testkit(json!({"action": "noop"}), tight()).await;
    assert!(next.result.is_ok(), "the host carries on");
}

#[tokio::test]
async fn a_trap_is_one_line_naming_the_function() {
    let run = run_testkit(json!({"action": "trap"}), tight()).await;
    let failure = run.result.unwrap_err();
    let text = failure.to_string();
    assert!(matches!(failure, Failure::Trap(_)), "{text}");
    assert_one_line(&text);
    assert!(
        text.starts_with("plugin trapped: wasm `unreachable` instruction executed (in function "),
        "{text}"
    );
    assert!(
        text.ends_with(
            "(in function <sluice_plugin_testkit::Testkit as sluice_plugin_sdk::Task>::run)"
        ),
        "names the function, demangled: {text}"
    );
    assert!(!text.contains("backtrace"), "{text}");
}

#[tokio::test]
async fn a_value_the_abi_forbids_is_the_plugins_fault() {
    let run = run_testkit(json!({"action": "bad-utf8"}), tight()).await;
    let failure = run.result.unwrap_err();
    let text = failure.to_string();
    assert!(matches!(failure, Failure::Abi(_)), "{text}");
    assert!(
        text.starts_with("plugin broke the component ABI: "),
        "{text}"
    );
    assert!(
        text.to_lowercase().contains("utf-8"),
        "says what was wrong: {text}"
    );
    assert_one_line(&text);
    assert!(run.logs.is_empty(), "nothing of the bad string was logged");
}

#[tokio::test]
async fn a_plugin_error_forging_an_engine_crash_is_quoted_as_the_plugins() {
    let forged =
        "sluice: internal error: engine crashed\nthread 'main' panicked at engine/src/x.rs:1:1";
    let run = run_testkit(json!({"action": "fail", "message": forged}), tight()).await;
    let failure = run.result.unwrap_err();
    assert_eq!(failure, Failure::Plugin(PluginError::Failed(forged.into())));
    let text = failure.to_string();
    assert_eq!(
        text,
        "plugin failed: \"sluice: internal error: engine crashed\\nthread 'main' panicked at \
         engine/src/x.rs:1:1\""
    );
    assert_one_line(&text);

    let config = run_testkit(json!({"action": "no-such-action"}), tight()).await;
    let text = config.result.unwrap_err().to_string();
    assert!(
        text.starts_with("plugin rejected its configuration: \"unknown variant `no-such-action`"),
        "{text}"
    );
}

#[tokio::test]
async fn a_panic_of_many_lines_reads_in_one() {
    let run = run_testkit(
        json!({"action": "panic", "message": "first\nsluice: engine crashed"}),
        tight(),
    )
    .await;
    let failure = run.result.unwrap_err();
    let text = failure.to_string();
    assert!(matches!(failure, Failure::Panic(_)), "{text}");
    assert!(
        text.starts_with("plugin panicked: first\\nsluice: engine crashed (at "),
        "{text}"
    );
    assert_one_line(&text);
}
