//! `sluice releases show`: one release as lines, every text from outside escaped.

use sluice::core::Release;
use sluice::types::Escaped;

pub(super) fn kebab<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(super) fn show(release: &Release) {
    println!("release   {}  ({})", release.name, kebab(release.state));
    println!(
        "pipeline  {}  revision {}",
        release.pipeline, release.revision
    );
    println!("creator   {}", Escaped(&release.creator));
    if let Some(d) = &release.description {
        println!("about     {}", Escaped(d));
    }
    for a in &release.artifacts {
        let v = &a.version;
        let mut extra = Vec::new();
        if let Some(b) = &v.branch {
            extra.push(format!("branch {}", Escaped(b)));
        }
        if let Some(c) = &v.commit {
            extra.push(format!("commit {}", Escaped(c)));
        }
        println!(
            "artifact  {} {} {}",
            a.alias,
            Escaped(&v.id),
            extra.join(", ")
        );
    }
    for (plugin, digest) in &release.digests {
        println!("plugin    {} {digest}", Escaped(plugin));
    }
    for stage in &release.stages {
        println!("stage     {} ({})", stage.name, kebab(stage.state()));
        for attempt in &stage.attempts {
            let reason = attempt
                .reason
                .as_deref()
                .map(|r| format!(" — {}", Escaped(r)))
                .unwrap_or_default();
            println!(
                "  attempt {} {}{reason}",
                attempt.number,
                kebab(attempt.state)
            );
            for approval in &attempt.approvals {
                let decisions: Vec<String> = approval
                    .decisions
                    .iter()
                    .map(|d| {
                        format!(
                            "{} by {}",
                            if d.approve { "approved" } else { "rejected" },
                            Escaped(&d.by)
                        )
                    })
                    .collect();
                println!(
                    "    {}-approval {} {}",
                    kebab(approval.kind),
                    kebab(approval.state),
                    decisions.join(", ")
                );
            }
            for task in &attempt.tasks {
                let messages = if task.messages.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", Escaped(&task.messages.join("; ")))
                };
                println!("    task {} {}{messages}", task.name, kebab(task.state));
                for o in &task.outputs {
                    // A secret output is stored as `***` already; never print one in clear anyway.
                    let value = if o.secret { "***" } else { &o.value };
                    println!("      output {} = {}", Escaped(&o.name), Escaped(value));
                }
            }
        }
    }
}
