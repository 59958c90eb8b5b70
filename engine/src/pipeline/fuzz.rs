//! Property tests of the parser (`parse` = TOML -> validate -> plan): whatever the text — any
//! string, any bytes, a near-valid pipeline with random keys, names and values, or one cut
//! short — parsing never panics, and every problem it reports names its place in the file.

use std::path::Path;

use proptest::prelude::*;

use super::parse;

/// Parses `source` and checks what a user relies on: no panic (proptest reports one as a
/// failure), and each diagnostic placed inside the file, with a message.
fn check(source: &str) -> Result<(), TestCaseError> {
    let Err(e) = parse("fuzz.toml", source, Path::new("/pipelines"), "fuzz") else {
        return Ok(());
    };
    prop_assert!(!e.diagnostics.is_empty());
    let lines = source.split('\n').count();
    for d in &e.diagnostics {
        prop_assert!(!d.message.trim().is_empty(), "an empty message");
        let Some(at) = &d.at else {
            return Err(TestCaseError::fail(format!("no place: {}", d.message)));
        };
        prop_assert_eq!(&at.file, "fuzz.toml");
        prop_assert!(
            at.line >= 1 && at.line <= lines,
            "line {} of {lines}",
            at.line
        );
        prop_assert!(at.col >= 1, "column {}", at.col);
    }
    Ok(())
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(options).prop_map(str::to_owned)
}

/// A name as an author might write one, or get wrong.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        pick(&["dev", "qa", "prod", "a", "deploy", "web-1", "x"]),
        pick(&[
            "",
            "..",
            "../x",
            "a b",
            "Dev",
            "-x",
            "a/b",
            "sluice.x",
            "é",
            "a\\u0000b"
        ]),
        prop::collection::vec(prop::sample::select(&b"az09-._/ \\"[..]), 0..70)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// A TOML value: mostly the right kind, sometimes not.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        name().prop_map(|n| format!("{n:?}")),
        pick(&[
            "\"10s\"",
            "\"0s\"",
            "\"-1s\"",
            "\"99999999999999999999h\"",
            "\"1.5m\""
        ]),
        pick(&[
            "\"64MiB\"",
            "\"0\"",
            "\"99999999999999GiB\"",
            "\"x\"",
            "1",
            "-1",
            "true"
        ]),
        pick(&[
            "[]",
            "[\"dev\"]",
            "{}",
            "{ a = 1 }",
            "1e400",
            "\"* * * * *\"",
            "\"bad\""
        ]),
        pick(&[
            "\"0 0 31 2 *\"",
            "\"UTC\"",
            "\"Mars/Olympus\"",
            "\"2026-01-01T00:00:00Z\""
        ]),
    ]
}

fn key() -> impl Strategy<Value = String> {
    pick(&[
        "name",
        "after",
        "timeout",
        "trigger",
        "variables",
        "queue",
        "approvals",
        "unknown",
        "schedule",
        "allow-partial",
        "description",
        "settable",
        "continue-on-error",
    ])
}

fn task() -> impl Strategy<Value = String> {
    let plugin = pick(&[
        "copy",
        "dir-source",
        "http-check",
        "./plugins/x.wasm",
        "/etc/passwd",
        "kopy",
        "",
    ]);
    let host = pick(&[
        "$(sluice.pipeline-dir)/out",
        "$(sluice.data-dir)",
        "$(sluice.pipeline-dir)/../..",
        "rel",
        "$(x)",
        "/",
        "$(sluice.workspace)/a",
    ]);
    let access = pick(&["ro", "rw", "x"]);
    (plugin, prop::option::of((host, access)), value(), value()).prop_map(
        |(plugin, grant, timeout, memory)| {
            let mut t = format!("[[stages.tasks]]\nplugin = {plugin:?}\ntimeout = {timeout}\n");
            t += &format!("limits = {{ memory = {memory} }}\n");
            if let Some((host, access)) = grant {
                t += &format!(
                    "grants.dirs = [{{ host = {host:?}, guest = \"/g\", access = {access:?} }}]\n"
                );
            }
            t
        },
    )
}

fn stage() -> impl Strategy<Value = String> {
    let extra = prop::collection::vec((key(), value()), 0..3);
    let approval = prop::option::of((value(), value()));
    let gate = prop::option::of(value());
    (
        name(),
        extra,
        prop::collection::vec(task(), 0..3),
        approval,
        gate,
    )
        .prop_map(|(name, extra, tasks, approval, gate)| {
            let mut s = format!("[[stages]]\nname = {name:?}\n");
            for (k, v) in extra {
                s += &format!("{k} = {v}\n");
            }
            if let Some((approvers, timeout)) = approval {
                s +=
                    &format!("pre-approval = {{ approvers = {approvers}, timeout = {timeout} }}\n");
            }
            for t in tasks {
                s += &t;
            }
            if let Some(interval) = gate {
                s += "[stages.post-gates]\n[[stages.post-gates.gates]]\nplugin = \"http-check\"\n";
                s += &format!("interval = {interval}\n");
            }
            s
        })
}

/// A pipeline close to valid: a header, variables, maybe an artifact, stages.
fn pipeline() -> impl Strategy<Value = String> {
    let header = prop::collection::vec((key(), value()), 0..3);
    let variables = prop::collection::vec((name(), value()), 0..3);
    let stages = prop::collection::vec(stage(), 0..4);
    (pick(&["1", "2", "\"1\"", "-1"]), header, variables, stages).prop_map(
        |(version, header, variables, stages)| {
            let mut p = format!("version = {version}\n");
            for (k, v) in header {
                p += &format!("{k} = {v}\n");
            }
            if !variables.is_empty() {
                p += "[variables]\n";
                for (n, v) in variables {
                    p += &format!("{n:?} = {v}\n");
                }
            }
            for s in stages {
                p += &s;
            }
            p
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_string_parses_or_fails_with_placed_errors(source in any::<String>()) {
        check(&source)?;
    }

    #[test]
    fn any_bytes_parse_or_fail_with_placed_errors(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn near_valid_pipelines_parse_or_fail_with_placed_errors(source in pipeline()) {
        check(&source)?;
    }

    #[test]
    fn pipelines_cut_short_fail_with_placed_errors(source in pipeline(), cut in any::<prop::sample::Index>()) {
        let mut end = cut.index(source.len() + 1);
        while !source.is_char_boundary(end) {
            end -= 1;
        }
        check(&source[..end])?;
    }
}
