//! `sluice serve` over TLS (`tls` in sluice.toml) and agents that reach it: with `--ca-file`
//! naming the CA that signed its certificate, one takes and runs a job; without, the
//! certificate is refused and said so. Clients (`sluice agents list`) take `--ca-file` too.
//! The fixtures are a test CA and a certificate for 127.0.0.1 it signed (valid to 2126).

use std::path::Path;

use super::{Site, pipeline};
use crate::support::process::wait_line;
use crate::support::token;
use sluice::api::client::Client;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/integration/agents/tls")
        .join(name)
}

#[test]
fn agents_reach_a_tls_server_through_its_ca_and_refuse_an_unknown_one() {
    let top = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        fixture("server.pem").display(),
        fixture("server.key").display()
    );
    let site = Site::start_with(&[("deploy", pipeline(false, 0))], "", &top);
    assert!(site.api.base.starts_with("https://"), "{}", site.api.base);
    let ca = fixture("ca.pem");
    let as_user =
        |who: &str| Client::trusting(&site.api.base, Some(token(who)), Some(&ca)).unwrap();
    let rita = as_user("rita");
    let ask = |client: &Client, method: &str, path: &str, body: Option<&str>| {
        let body = body.map(|b| b.as_bytes().to_vec());
        (site.api.runtime)
            .block_on(client.send(method, path, body, &[]))
            .unwrap()
    };
    if ask(&rita, "GET", "/readyz", None).status != 200 {
        wait_line(&site.lines, "sluice-startup:");
    }
    assert_eq!(
        ask(&rita, "GET", "/readyz", None).status,
        200,
        "ready over TLS"
    );
    // Plain HTTP on the TLS port gets no API.
    let plain = site.api.base.replace("https://", "http://");
    let plain = Client::new(&plain, Some(token("rita"))).unwrap();
    assert!(site.api.runtime.block_on(plain.get("/readyz")).is_err());

    // Without the CA, the web's roots do not vouch for the test certificate: said, retried.
    let out = site.out.display().to_string();
    let mut stranger = site.agent("a0", &["--allow-dir", &out]);
    wait_line(&stranger.lines, "invalid peer certificate");
    stranger.child.kill().unwrap();

    let ca_flag = ca.display().to_string();
    let _a1 = site.agent("a1", &["--allow-dir", &out, "--ca-file", &ca_flag]);
    let vic = as_user("vic");
    let mut audit = (site.api.runtime)
        .block_on(vic.events("/api/v1/audit?follow=true&limit=0"))
        .unwrap();
    let created = ask(
        &rita,
        "POST",
        "/api/v1/pipelines/deploy/releases",
        Some("{}"),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let release = created.json()["name"].as_str().unwrap().to_owned();
    // Woken by each commit, over TLS too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ask(&vic, "GET", &format!("/api/v1/releases/{release}"), None).json()["stages"][0]["state"]
        != "succeeded"
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let next =
            (site.api.runtime).block_on(async { tokio::time::timeout(left, audit.next()).await });
        assert!(
            matches!(next, Ok(Ok(Some(_)))),
            "never: the release succeeded on a1"
        );
    }
    let view = ask(&vic, "GET", &format!("/api/v1/releases/{release}"), None).json();
    assert_eq!(view["stages"][0]["attempts"][0]["lease"]["agent"], "a1");
    let runs = std::fs::read_to_string(site.out.join("runs")).unwrap();
    assert_eq!(runs, format!("{release}\n"));

    // The CLI's client commands take --ca-file too.
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "agents",
            "list",
            "--server",
            &site.api.base,
            "--ca-file",
            &ca_flag,
        ])
        .env("SLUICE_TOKEN", token("vic"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(stdout.contains("a1"), "{stdout}");
}
