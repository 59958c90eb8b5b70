//! Release triggers on a real service: a release schedule fires at its times, and each time at
//! most once, even when the clock steps back over it; continuous deployment releases each new
//! version once, across a SIGKILL. (Cron across daylight saving time is in the core's tests.)

use serde_json::json;

use crate::support::process::service_dir;
use crate::support::{Api, Approvals, Harness, Process};

fn pipeline(cron: &str) -> String {
    format!(
        r#"
version = 1
name = "web"
[triggers.schedule]
cron = "{cron}"
time-zone = "Europe/Berlin"
[[stages]]
name = "dev"
[[stages.tasks]]
plugin = "./kit.wasm"
config = {{ action = "noop" }}
"#
    )
}

/// The descriptions of the releases of `web`, oldest first.
fn releases(h: &Harness) -> Vec<String> {
    let mut all = h.service.store().releases().unwrap();
    all.sort_by_key(|r| r.number);
    all.into_iter()
        .map(|r| r.description.unwrap_or_default())
        .collect()
}

#[test]
fn a_release_schedule_creates_a_release_at_each_time() {
    // Every second (cron with a seconds field).
    let h = Harness::serve(&pipeline("* * * * * *"));
    h.wait("two scheduled releases", |h| releases(h).len() >= 2);
    let made = releases(&h);
    assert!(
        made.iter().all(
            |d| d.starts_with("scheduled: `* * * * * *` at ") && d.ends_with("[Europe/Berlin]")
        ),
        "{made:?}"
    );
    assert_ne!(made[0], made[1], "two different times");
    let release = h.service.store().releases().unwrap().remove(0);
    assert_eq!(release.creator, "trigger:schedule");
}

#[test]
fn a_scheduled_time_reached_again_after_the_clock_stepped_back_creates_no_second_release() {
    // Never due while the test runs: the test plays the trigger loop's part.
    let h = Harness::serve(&pipeline("0 3 1 1 *"));
    let at = 1_798_768_800_000; // 2027-01-01T02:00:00Z = 03:00 in Berlin
    let first = h.runtime.block_on(h.service.fire_schedule("web", at));
    let name = first.unwrap().expect("the first time creates a release");
    // The wall clock steps back an hour and reaches 03:00 again; or the service restarted.
    let again = h.runtime.block_on(h.service.fire_schedule("web", at));
    assert_eq!(again.unwrap(), None);
    assert_eq!(releases(&h).len(), 1);
    assert_eq!(
        releases(&h)[0],
        "scheduled: `0 3 1 1 *` at 2027-01-01T03:00:00+01:00[Europe/Berlin]"
    );
    assert!(h.service.release(&name).is_ok());
}

/// A build folder for `dir-source`, on `branch`.
fn build(builds: &std::path::Path, version: &str, branch: &str) {
    let dir = builds.join(version);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), version).unwrap();
    std::fs::write(
        dir.join(".artifact.json"),
        json!({ "branch": branch }).to_string(),
    )
    .unwrap();
}

#[test]
fn continuous_deployment_releases_each_new_version_once_across_a_sigkill() {
    let dir = service_dir();
    let builds = dir.path().join("builds");
    build(&builds, "1.0", "main");
    build(&builds, "1.1", "main");
    build(&builds, "1.5", "feature");
    std::fs::write(
        dir.path().join("pipelines/site.toml"),
        format!(
            r#"
version = 1
name = "site"
[artifacts.build]
source = "dir-source"
config = {{ path = "/builds" }}
grants.dirs = [{{ host = "{}", guest = "/builds" }}]
[triggers.continuous]
artifact = "build"
interval = "100ms"
branch = "main"
[[stages]]
name = "dev"
[[stages.tasks]]
plugin = "./kit.wasm"
config = {{ action = "noop" }}
"#,
            builds.display()
        ),
    )
    .unwrap();
    let released = |p: &Api| -> Vec<String> {
        let list = p
            .call("vic", "GET", "/api/v1/releases?pipeline=site", None)
            .json();
        let mut releases: Vec<(u64, String)> = list["releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let description = r["description"].as_str().unwrap_or_default();
                (r["number"].as_u64().unwrap(), description.to_owned())
            })
            .collect();
        releases.sort();
        releases.into_iter().map(|(_, d)| d).collect()
    };
    let of = |versions: &[&str]| -> Vec<String> {
        versions
            .iter()
            .map(|v| format!("continuous deployment: build {v}"))
            .collect()
    };

    // Set up with 1.0 and 1.1 on main: the newest is released, history is not replayed.
    let mut p = Process::start(dir);
    p.wait("1.1 released", |p| released(p) == of(&["1.1"]));
    // New builds: each on main gets one release, oldest first; the feature branch none.
    build(&builds, "1.2", "main");
    build(&builds, "1.3", "main");
    build(&builds, "1.4", "feature");
    p.wait("1.2 and 1.3 released", |p| {
        released(p) == of(&["1.1", "1.2", "1.3"])
    });
    // Killed and restarted: the versions it released stay released once.
    p.kill_and_restart();
    build(&builds, "1.6", "main");
    p.wait("1.6 released", |p| released(p).len() >= 4);
    assert_eq!(released(&p), of(&["1.1", "1.2", "1.3", "1.6"]));
}
