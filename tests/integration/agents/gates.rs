//! A pooled stage's gates run where the stage runs: on an agent of its pool that meets its
//! demands, granted only what that agent offers. While no such agent is online the sample
//! waits, saying why, and the gates fail at their timeout.

use serde_json::json;

use super::{Site, heard};

/// Stage `prod` on pool `eu-prod` (demanding region=eu) with a pre-deployment gate that is
/// healthy, and a post-deployment gate healthy once the task's file exists where it runs.
const GATED: &str = r#"
version = 1
name = "gated"
[[stages]]
name = "prod"
pool = "eu-prod"
demands = ["region=eu"]
[stages.pre-gates]
interval = "100ms"
timeout = "60s"
[[stages.pre-gates.gates]]
name = "ready"
plugin = "./kit.wasm"
config = { healthy = true }
[stages.post-gates]
interval = "100ms"
timeout = "60s"
[[stages.post-gates.gates]]
name = "shipped"
plugin = "./kit.wasm"
config = { healthy = true, file = "/out/runs" }
grants.dirs = [{ host = "OUT", guest = "/out", access = "ro" }]
[[stages.tasks]]
name = "ship"
plugin = "./kit.wasm"
config = { action = "append", path = "/out/runs", line = "$(sluice.release)" }
grants.dirs = [{ host = "OUT", guest = "/out", access = "rw" }]
"#;

fn prod(site: &Site, release: &str) -> serde_json::Value {
    site.api.get("vic", &format!("/api/v1/releases/{release}"))["stages"][0].clone()
}

#[test]
fn a_pooled_stages_gates_are_evaluated_on_an_agent_granted_what_it_offers() {
    // The same gate asking for a directory no agent offers; and a stage no agent meets.
    let refused = GATED
        .replace("name = \"gated\"", "name = \"refused\"")
        .replace(
            "host = \"OUT\", guest = \"/out\", access = \"ro\"",
            "host = \"/etc\", guest = \"/out\", access = \"ro\"",
        )
        .replace("timeout = \"60s\"", "timeout = \"1s\"");
    let nowhere = GATED
        .replace("name = \"gated\"", "name = \"nowhere\"")
        .replace("region=eu", "region=mars")
        .replace("timeout = \"60s\"", "timeout = \"1s\"");
    let pipelines = [
        ("gated", GATED.to_owned()),
        ("refused", refused),
        ("nowhere", nowhere),
    ];
    let site = Site::start(&pipelines, "");
    let out = site.out.display().to_string();

    // No agent yet: the pre-deployment gates' sample waits, saying why.
    let release = site.release("gated");
    heard(
        &site.lines,
        &[&format!("job {release}.prod.1.pre-gates queued")],
    );
    let stage = prod(&site, &release);
    assert_eq!(stage["state"], "evaluating-gates", "{stage:#}");
    assert_eq!(
        stage["waiting"], "no online agent in pool eu-prod meets region=eu",
        "{stage:#}"
    );

    // An agent comes online: it evaluates both phases' gates and deploys in between; the
    // post-deployment gate sees the file the task wrote on that agent's side.
    let _eu = site.agent("a1", &["--capability", "region=eu", "--allow-dir", &out]);
    site.api.wait_stage(&release, "prod", "succeeded");
    let attempt = &prod(&site, &release)["attempts"][0];
    let gates = attempt["gates"].as_array().unwrap();
    assert_eq!(gates.len(), 2, "{attempt:#}");
    for (run, kind) in gates.iter().zip(["pre", "post"]) {
        assert_eq!(
            (run["kind"].as_str(), run["state"].as_str()),
            (Some(kind), Some("succeeded")),
            "{run:#}"
        );
    }
    let audit = site
        .api
        .get("vic", &format!("/api/v1/audit?release={release}"));
    let evaluated: Vec<&serde_json::Value> = (audit["entries"].as_array().unwrap().iter())
        .filter(|e| {
            e["what"]
                .as_str()
                .unwrap_or_default()
                .contains("gates evaluated")
        })
        .collect();
    assert!(evaluated.len() >= 2, "{audit:#}");
    for entry in evaluated {
        assert_eq!(
            entry["actor"], "agent:a1",
            "evaluated on the agent: {entry:#}"
        );
    }

    // A gate asking for a directory the agent does not offer is unhealthy, in the agent's
    // words, and fails the stage at its timeout.
    let denied = site.release("refused");
    site.api.wait_stage(&denied, "prod", "failed");
    let attempt = &prod(&site, &denied)["attempts"][0];
    let why = attempt["reason"].as_str().unwrap_or_default();
    assert!(why.contains("post-deployment gates failed"), "{attempt:#}");
    assert!(
        why.contains("outside this agent's --allow-dir"),
        "{attempt:#}"
    );

    // No agent meets the stage: its gates fail at the timeout, saying so.
    let stranded = site.release("nowhere");
    site.api.wait_stage(&stranded, "prod", "failed");
    let attempt = &prod(&site, &stranded)["attempts"][0];
    let why = attempt["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("no agent of pool `eu-prod` meeting the stage's demands evaluated it"),
        "{attempt:#}"
    );
    let runs = std::fs::read_to_string(site.out.join("runs")).unwrap();
    assert_eq!(
        runs,
        format!("{release}\n{denied}\n"),
        "the stranded release never deployed"
    );
}

#[test]
fn a_hostile_agents_gate_answers_are_fenced_checked_and_bounded() {
    let site = Site::start(&[("gated", GATED.to_owned())], "");
    let release = site.release("gated");
    heard(
        &site.lines,
        &[&format!("job {release}.prod.1.pre-gates queued")],
    );
    let agent =
        sluice::api::client::Client::new(&site.api.base, Some(super::agent_token())).unwrap();
    let post = |path: &str, body: serde_json::Value| {
        let bytes = body.to_string().into_bytes();
        site.api
            .runtime
            .block_on(agent.send("POST", path, Some(bytes), &[]))
            .unwrap()
    };
    let hello = json!({"agent": "evil", "pool": "eu-prod", "capabilities": {"region": "eu"}, "max-jobs": 1});
    let job = post("/api/v1/agent/jobs/next", hello);
    assert_eq!(job.status, 200, "{}", job.text());
    let (id, epoch) = (
        job.json()["id"].clone(),
        job.json()["epoch"].as_u64().unwrap(),
    );
    assert_eq!(id, format!("{release}.prod.1.pre-gates"));
    let fence = json!({"agent": "evil", "epoch": epoch});
    let step = post(
        &format!("/api/v1/agent/jobs/{}/step", id.as_str().unwrap()),
        fence,
    );
    assert_eq!(step.json()["step"], "gates", "{}", step.text());
    assert_eq!(step.json()["gates"][0]["name"], "ready");
    let path = format!("/api/v1/agent/jobs/{}/gates", id.as_str().unwrap());
    let report = |epoch: u64, gate: &str, outcome: serde_json::Value| json!({"agent": "evil", "epoch": epoch, "results": [{"gate": gate, "outcome": outcome}]});

    // Another epoch: fenced off. Gates the step did not name: refused. Nothing recorded.
    let stale = post(&path, report(epoch + 1, "ready", json!({"Ok": null})));
    assert_eq!(stale.status, 409, "{}", stale.text());
    let forged = post(&path, report(epoch, "other", json!({"Ok": null})));
    assert_eq!(forged.status, 400, "{}", forged.text());
    assert!(forged.text().contains("one result per gate the step named"));
    let attempt = &prod(&site, &release)["attempts"][0];
    assert_eq!(attempt["gates"][0]["count"], 0, "{attempt:#}");

    // A reason of 64 KiB is stored cut to 4 KiB; the sample counts, and the next one is
    // queued for an agent again.
    let long = "x".repeat(64 * 1024);
    let answered = post(&path, report(epoch, "ready", json!({ "Err": long })));
    assert_eq!(answered.status, 200, "{}", answered.text());
    assert_eq!(answered.json()["done"], true);
    let attempt = &prod(&site, &release)["attempts"][0];
    let run = &attempt["gates"][0];
    assert_eq!(run["count"], 1, "{attempt:#}");
    let reason = run["evaluations"][0]["results"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.len() <= 4096 + 8 && reason.ends_with("[cut]"),
        "{}",
        reason.len()
    );
    // The answered job is over: answering it again is fenced off.
    let again = post(&path, report(epoch, "ready", json!({"Ok": null})));
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(prod(&site, &release)["state"], "evaluating-gates");
}
