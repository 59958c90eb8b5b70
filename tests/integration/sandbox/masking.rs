//! Secrets stay masked where masking used to miss them: as a field key, as an output's name,
//! across the 16 KiB cut of a long line (from the log import, a field and stdout), and where two
//! secrets overlap. Every check looks at everything the host kept and forwarded: the stored
//! lines, the live events and what the call returned.

use std::sync::{Arc, Mutex};

use serde_json::json;
use sluice::plugin::Sandbox;
use sluice::types::{Invocation, LogEvent, TaskReport};

use crate::support::run_testkit;

/// Longest line kept (the host's cut).
const CUT: usize = 16 << 10;

/// Runs the testkit with `secrets` masked; returns the run and every live event's text.
async fn run_masked(
    config: serde_json::Value,
    secrets: &[&str],
) -> (Invocation<TaskReport>, Vec<String>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let sandbox = Sandbox {
        mask: secrets.iter().map(|s| (*s).to_owned()).collect(),
        sink: Some(Arc::new(move |event: &LogEvent| {
            let text = match event {
                LogEvent::Line(line) => format!("{line:?}"),
                LogEvent::Progress { message, .. } => message.clone(),
            };
            seen.lock().unwrap().push(text);
        })),
        ..crate::support::tight()
    };
    let run = run_testkit(config, sandbox).await;
    let events = events.lock().unwrap().clone();
    (run, events)
}

/// Everything the host kept or forwarded, as text people see: stored lines, live events, the
/// failure or the warnings and output names, and the values of outputs not marked secret (a
/// secret output's value travels on, as a secret).
fn everything(run: &Invocation<TaskReport>, events: &[String]) -> String {
    let result = match &run.result {
        Err(failure) => failure.to_string(),
        Ok(report) => {
            let outputs: Vec<String> = report
                .outputs
                .iter()
                .map(|o| match o.secret {
                    true => format!("{} (secret)", o.name),
                    false => format!("{}={}", o.name, o.value),
                })
                .collect();
            format!("{:?} {outputs:?}", report.warnings)
        }
    };
    format!("{:?}\n{result}\n{}", run.logs, events.join("\n"))
}

/// No piece of `secret` of four bytes or more shows anywhere.
fn assert_hidden(text: &str, secret: &str) {
    for start in 0..=secret.len() - 4 {
        let piece = &secret[start..start + 4];
        assert!(
            !text.contains(piece),
            "`{piece}` of the secret leaked: {text}"
        );
    }
}

#[tokio::test]
async fn a_secret_used_as_a_field_key_is_masked() {
    let secret = "K3y-As-Secret";
    let (run, events) = run_masked(
        json!({"action": "say", "message": "deploying",
               "fields": [[secret, "value"], [format!("{secret}-suffix"), secret]]}),
        &[secret],
    )
    .await;
    run.result.as_ref().unwrap();
    assert_eq!(
        run.logs[0].fields,
        [
            ("***".to_owned(), "value".to_owned()),
            ("***-suffix".to_owned(), "***".to_owned())
        ]
    );
    assert_eq!(events.len(), 1);
    assert_hidden(&everything(&run, &events), secret);
}

#[tokio::test]
async fn a_secret_used_as_an_output_name_is_masked_and_makes_the_output_secret() {
    let secret = "N4me-0f-0ut";
    let (run, events) = run_masked(
        json!({"action": "say", "message": "ok", "output": [format!("tag-{secret}"), "plain"]}),
        &[secret],
    )
    .await;
    let report = run.result.as_ref().unwrap();
    assert_eq!(report.outputs.len(), 1);
    assert_eq!(report.outputs[0].name, "tag-***");
    assert!(report.outputs[0].secret, "its value travels as a secret");
    assert_hidden(&everything(&run, &events), secret);
}

#[tokio::test]
async fn a_secret_across_the_16_kib_cut_is_masked_before_the_cut() {
    let secret = "Str4ddl3-The-Cut";
    // The secret starts 4 bytes before the cut: a cut before masking kept `Str4`.
    let long = format!("{}{secret}{}", "a".repeat(CUT - 4), "z".repeat(100));
    let (run, events) = run_masked(
        json!({"action": "say", "message": long, "fields": [["k", long]],
               "text": format!("{long}\n"), "chunk": 1000}),
        &[secret],
    )
    .await;
    run.result.as_ref().unwrap();
    assert_eq!(
        run.logs.len(),
        2,
        "one line from the log import, one from stdout"
    );
    let expected = format!("{}***{}", "a".repeat(CUT - 4), "z");
    for text in [
        &run.logs[0].message,
        &run.logs[0].fields[0].1,
        &run.logs[1].message,
    ] {
        assert_eq!(text.len(), CUT, "the kept line is cut at 16 KiB");
        assert_eq!(text, &expected);
    }
    assert_hidden(&everything(&run, &events), secret);
}

#[tokio::test]
async fn overlapping_secrets_are_masked_as_their_union() {
    let (first, second) = ("abcd-EFGH", "EFGH-ijkl");
    let secrets = [first, second];
    let (run, events) = run_masked(
        json!({"action": "say", "message": "token abcd-EFGH-ijkl here",
               "output": ["out", "abcd-EFGH-ijkl"], "text": "EFGH-ijkl abcd-EFGH-ijkl\n"}),
        &secrets,
    )
    .await;
    let report = run.result.as_ref().unwrap();
    assert_eq!(run.logs[0].message, "token *** here");
    assert_eq!(run.logs[1].message, "*** ***");
    assert!(report.outputs[0].secret);
    let all = everything(&run, &events);
    for secret in secrets {
        assert_hidden(&all, secret);
    }

    let (failed, events) = run_masked(
        json!({"action": "fail", "message": "rejected abcd-EFGH-ijkl"}),
        &secrets,
    )
    .await;
    assert_eq!(
        failed.result.as_ref().unwrap_err().to_string(),
        r#"plugin failed: "rejected ***""#
    );
    let (warned, _) = run_masked(
        json!({"action": "warn", "warning": "EFGH-ijklabcd-EFGH"}),
        &secrets,
    )
    .await;
    assert_eq!(warned.result.unwrap().warnings, ["***"]);
    assert_hidden(&everything(&failed, &events), first);
}
