//! Floods of items that cost nothing in bytes: empty log lines, empty fields, progress reports,
//! stdout written past the limit with the errors ignored, empty outputs and warnings. Each item
//! costs at least `ITEM_OVERHEAD` against its limit, so each flood stops at its limit, the call
//! fails naming it, and what the host kept stays within the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use sluice::core::{ReleaseState, TaskState};
use sluice::plugin::Sandbox;
use sluice::store::{LogKey, Store};
use sluice::types::limits::ITEM_OVERHEAD;
use sluice::types::{LimitKind, LogEvent, LogLine};

use crate::engine::{HEADER, Project, options, run};
use crate::support::{output, run_testkit, tight};

use super::limit;

/// A sandbox whose log and output limits are 1 KiB, as in the issue's probes.
fn one_kib() -> Sandbox {
    let mut sandbox = tight();
    sandbox.limits.log = 1 << 10;
    sandbox.limits.output = 1 << 10;
    sandbox
}

/// What the kept lines cost: never more than the limit.
fn kept_cost(lines: &[LogLine]) -> u64 {
    lines
        .iter()
        .map(|l| {
            ITEM_OVERHEAD
                + l.message.len() as u64
                + l.fields
                    .iter()
                    .map(|(k, v)| ITEM_OVERHEAD + (k.len() + v.len()) as u64)
                    .sum::<u64>()
        })
        .sum()
}

#[tokio::test]
async fn five_million_empty_lines_stop_at_the_log_limit() {
    let run = run_testkit(
        json!({"action": "empty-lines", "count": 5_000_000}),
        one_kib(),
    )
    .await;
    let failure = run.result.unwrap_err();
    assert_eq!(limit(&failure), LimitKind::Log);
    assert!(
        failure
            .to_string()
            .starts_with("log limit of 1 KiB exceeded"),
        "{failure}"
    );
    assert_eq!(
        run.logs.len() as u64,
        1024 / ITEM_OVERHEAD,
        "16 empty lines fit in 1 KiB"
    );
    assert!(kept_cost(&run.logs) <= 1024);
}

#[tokio::test]
async fn empty_fields_cost_like_lines() {
    let run = run_testkit(
        json!({"action": "empty-fields", "lines": 1_000_000, "fields": 1000}),
        one_kib(),
    )
    .await;
    assert_eq!(limit(&run.result.unwrap_err()), LimitKind::Log);
    // One line of a thousand empty fields costs 64 KiB: not one is kept.
    assert!(run.logs.is_empty(), "{:?}", run.logs.len());

    // Three fields a line: each line costs 4 × 64 bytes, so four lines fit.
    let run = run_testkit(
        json!({"action": "empty-fields", "lines": 1_000_000, "fields": 3}),
        one_kib(),
    )
    .await;
    assert_eq!(limit(&run.result.unwrap_err()), LimitKind::Log);
    assert_eq!(run.logs.len(), 4);
    assert!(kept_cost(&run.logs) <= 1024);
}

#[tokio::test]
async fn a_progress_flood_hits_the_log_limit() {
    let reports = Arc::new(AtomicU64::new(0));
    let seen = reports.clone();
    let sandbox = Sandbox {
        sink: Some(Arc::new(move |event: &LogEvent| {
            if matches!(event, LogEvent::Progress { .. }) {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        })),
        ..one_kib()
    };
    let run = run_testkit(json!({"action": "progress", "count": 10_000_000}), sandbox).await;
    let failure = run.result.unwrap_err();
    assert_eq!(limit(&failure), LimitKind::Log);
    assert!(failure.to_string().contains("progress report"), "{failure}");
    assert_eq!(reports.load(Ordering::Relaxed), 1024 / ITEM_OVERHEAD);
}

#[tokio::test]
async fn stdout_past_the_limit_fails_the_call_even_when_the_plugin_ignores_the_errors() {
    let run = run_testkit(
        json!({"action": "stdout-ignoring-errors", "count": 100_000, "size": 10}),
        one_kib(),
    )
    .await;
    let failure = run.result.unwrap_err();
    assert_eq!(limit(&failure), LimitKind::Log, "{failure}");
    assert!(failure.to_string().contains("`limits.log`"), "{failure}");
    // Each line costs its 10 bytes, its newline and the overhead: 13 lines fit in 1 KiB.
    assert_eq!(run.logs.len(), 13);
    assert!(run.logs.iter().all(|l| l.message == "i".repeat(10)));

    // Under the limit, the same plugin succeeds and saw no refusal.
    let fits = run_testkit(
        json!({"action": "stdout-ignoring-errors", "count": 13, "size": 10}),
        one_kib(),
    )
    .await;
    assert_eq!(output(&fits.result.unwrap(), "refused"), Some("0"));
}

#[tokio::test]
async fn an_unterminated_stdout_flood_is_bounded_by_the_log_limit() {
    let text = "u".repeat(4 << 10);
    let run = run_testkit(
        json!({"action": "say", "message": "", "text": text, "chunk": 100}),
        one_kib(),
    )
    .await;
    let failure = run.result.unwrap_err();
    assert_eq!(limit(&failure), LimitKind::Log);
    assert!(kept_cost(&run.logs) <= 1024);
}

#[tokio::test]
async fn a_million_empty_outputs_or_warnings_hit_the_output_limit() {
    let mut roomy = one_kib();
    roomy.limits.memory = 512 << 20;
    for (outputs, warnings) in [(1_000_000, 0), (0, 1_000_000)] {
        let run = run_testkit(
            json!({"action": "empty-items", "outputs": outputs, "warnings": warnings}),
            roomy.clone(),
        )
        .await;
        let failure = run.result.unwrap_err();
        assert_eq!(limit(&failure), LimitKind::Output, "{outputs} {warnings}");
        assert!(
            failure
                .to_string()
                .starts_with("output size limit of 1 KiB exceeded"),
            "{failure}"
        );
    }
}

#[tokio::test]
async fn n_empty_items_cost_n_times_the_overhead() {
    let fit = 1024 / ITEM_OVERHEAD;
    for (outputs, warnings) in [(fit, 0), (0, fit), (fit / 2, fit / 2)] {
        let run = run_testkit(
            json!({"action": "empty-items", "outputs": outputs, "warnings": warnings}),
            one_kib(),
        )
        .await;
        let report = run.result.unwrap();
        assert_eq!(report.outputs.len() as u64, outputs);
        assert_eq!(report.warnings.len() as u64, warnings);
    }
    for (outputs, warnings) in [(fit + 1, 0), (0, fit + 1), (fit / 2, fit / 2 + 1)] {
        let run = run_testkit(
            json!({"action": "empty-items", "outputs": outputs, "warnings": warnings}),
            one_kib(),
        )
        .await;
        assert_eq!(limit(&run.result.unwrap_err()), LimitKind::Output);
    }
}

#[tokio::test]
async fn a_release_whose_task_floods_empty_lines_stores_no_more_than_its_limit() {
    let pipeline = format!(
        r#"{HEADER}
[[stages]]
name = "dev"

[[stages.tasks]]
name = "flood"
plugin = "kit"
config = {{ action = "empty-lines", count = 1000000 }}
limits = {{ log = "1KiB" }}
"#
    );
    let project = Project::new(&pipeline);
    let release = run(&project, None, options()).await.unwrap();
    assert_eq!(release.state, ReleaseState::Failed);
    let task = &release.stage("dev").unwrap().attempts[0].tasks[0];
    assert_eq!(task.state, TaskState::Failed);
    assert!(
        task.messages
            .join("")
            .starts_with("log limit of 1 KiB exceeded"),
        "{:?}",
        task.messages
    );
    let store = Store::open(&project.data_dir()).unwrap();
    let log = store
        .log(&LogKey {
            release: &release.name,
            stage: "dev",
            attempt: 1,
            task: "flood",
        })
        .unwrap()
        .unwrap();
    let plugin_lines = log
        .iter()
        .filter(|l| l.source != sluice::types::Source::Host);
    assert!(
        plugin_lines.count() as u64 <= 1024 / ITEM_OVERHEAD,
        "{}",
        log.len()
    );
}
