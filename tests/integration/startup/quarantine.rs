//! A release record that does not decode is quarantined at start-up: the service starts and
//! serves every other release, the API and `sluice releases list` show the quarantined one,
//! and asking for it says it is quarantined.

use std::process::Command;

use super::{api, create, kill};
use crate::support::Approvals;
use crate::support::process::{serve, serve_logged, service_dir};
use sluice::store::Store;

/// A release record as a torn write or a damaged disk leaves it.
const RAW: &[u8] = b"\x00 torn {\"name\": ";

#[test]
fn an_undecodable_release_is_quarantined_and_every_other_release_goes_on() {
    let dir = service_dir();
    let (child, base, _lines) = serve(dir.path(), None);
    let server = api(base);
    let (bad, good) = (create(&server, "shop"), create(&server, "shop"));
    server.wait_pending(&[format!("{bad}.qa.1.pre"), format!("{good}.qa.1.pre")]);
    kill(child);
    let data = dir.path().join("data");
    Store::open(&data)
        .unwrap()
        .put_raw_release_for_tests(&bad, RAW)
        .unwrap();

    // Starts (no crash loop), says so naming the record, and serves the other release.
    let (child, base, lines, started) = serve_logged(dir.path(), None);
    let server = api(base);
    let said = started.iter().find(|l| l.contains("does not decode"));
    assert!(said.is_some_and(|l| l.contains(&bad)), "{started:#?}");
    server.until_ready(&lines);
    let list = server.get("vic", "/api/v1/releases");
    let names: Vec<&str> = list["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [good.as_str()]);
    let quarantine = server.get("vic", "/api/v1/quarantine");
    let listed = quarantine["quarantined"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{quarantine}");
    assert_eq!(listed[0]["key"], bad.as_str());
    assert_eq!(listed[0]["bytes"], RAW.len());
    let asked = server.call("vic", "GET", &format!("/api/v1/releases/{bad}"), None);
    assert_eq!(asked.status, 409, "{}", asked.text());
    assert!(asked.text().contains("quarantined"), "{}", asked.text());
    let audit = server.get("vic", &format!("/api/v1/audit?release={bad}"));
    let last = &audit["entries"].as_array().unwrap().last().unwrap()["what"];
    assert!(last.as_str().unwrap().starts_with("quarantined"), "{audit}");
    // The other release goes on: its approval is pending, and deciding it moves it on.
    assert_eq!(server.pending(), [format!("{good}.qa.1.pre")]);
    server.approve(&format!("{good}.qa.1.pre"));
    server.wait_stage(&good, "qa", "succeeded");
    kill(child);

    // Started again: the same (nothing quarantined twice, nothing lost).
    let (child, base, lines) = serve(dir.path(), None);
    let server = api(base);
    server.until_ready(&lines);
    let quarantine = server.get("vic", "/api/v1/quarantine");
    assert_eq!(quarantine["quarantined"].as_array().unwrap().len(), 1);
    kill(child);

    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["releases", "list", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (releases, quarantined) = stdout
        .split_once("QUARANTINED")
        .expect("a quarantine section");
    assert!(
        releases.contains(&good) && !releases.contains(&bad),
        "{stdout}"
    );
    assert!(quarantined.contains(&bad), "{stdout}");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["releases", "show", &bad, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is quarantined"), "{stderr}");
}
