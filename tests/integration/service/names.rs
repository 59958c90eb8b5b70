//! Pipeline names from the URL, as an attacker sends them: every name that is a path, a
//! header break or an id break is a 400 with a JSON error naming the rule, and nothing is
//! written outside the pipelines directory, nor stored.

use std::collections::BTreeSet;
use std::path::Path;

use sluice::api::client::Reply;
use sluice::service::config::ApiLimits;

use crate::support::Server;

/// A pipeline that leaves out `name`: it takes the name it is sent as.
const NAMELESS: &str = r#"
version = 1

[[stages]]
name = "only"
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

fn send(server: &Server, who: &str, method: &str, path: &str) -> Reply {
    server
        .runtime
        .block_on(
            server
                .client(who)
                .send(method, path, Some(NAMELESS.as_bytes().to_vec()), &[]),
        )
        .unwrap()
}

/// The entries of `dir` with their contents (files) — what a write would change.
fn listing(dir: &Path) -> BTreeSet<(String, Option<Vec<u8>>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).ok())
        })
        .collect()
}

fn pipeline_names(server: &Server) -> Vec<String> {
    let list = server.get("vic", "/api/v1/pipelines");
    list["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn pipeline_names_that_are_paths_are_400_and_write_nothing() {
    let server = Server::start("1h", ApiLimits::default());
    let root = server.dir.path();
    let pipelines = root.join("pipelines");
    // The service's own config sits next to its pipelines directory, as `sluice serve` has it.
    let config = root.join("sluice.toml");
    std::fs::write(&config, "# the server's config\n").unwrap();
    let outside = tempfile::tempdir().unwrap();
    let absolute = format!("{}/victim", outside.path().display()).replace('/', "%2F");
    let above = root.parent().unwrap();
    let above_files = ["escaped.toml", "escaped.toml.new"];
    let tmp_victim = |ext: &str| std::fs::read(format!("/tmp/victim.{ext}")).ok();
    let victim_before = (tmp_victim("toml"), tmp_victim("toml.new"));

    // A name that is a name is served, so the probes below fail on their names alone.
    let fresh = send(&server, "ada", "PUT", "/api/v1/pipelines/fresh");
    assert_eq!(fresh.status, 200, "{}", fresh.text());
    assert!(pipelines.join("fresh.toml").is_file());
    let stored = pipeline_names(&server);
    let (pipelines_before, root_before) = (listing(&pipelines), listing(root));

    let (long, over) = ("a".repeat(300), "p".repeat(65));
    let probes = [
        "..%2F..%2Fescaped",
        "..%2Fsluice",
        "%2Ftmp%2Fvictim",
        absolute.as_str(),
        "%2E%2E",
        "%2E",
        "bad%00name",
        "bad%0D%0Aname",
        "bad%0Aname",
        long.as_str(),
        over.as_str(),
        "web.prod",
        "bad%22name",
        "bad%5Cname",
        "bad%E2%80%AEname",
        "Shop",
    ];
    for probe in probes {
        for (who, method, path) in [
            ("ada", "PUT", format!("/api/v1/pipelines/{probe}")),
            (
                "rita",
                "POST",
                format!("/api/v1/pipelines/{probe}/validate"),
            ),
        ] {
            let reply = send(&server, who, method, &path);
            assert_eq!(reply.status, 400, "{method} {path}: {}", reply.text());
            assert!(
                reply
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("application/json")),
                "{method} {path}: {:?}",
                reply.headers
            );
            let error = reply.json()["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                error.starts_with("invalid pipeline name: ")
                    && error.contains("names use lowercase letters, digits, `-` and `_`"),
                "{method} {path}: {error:?}"
            );
            assert!(
                !error.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{method} {path}: {error:?}"
            );
        }
    }

    assert_eq!(listing(&pipelines), pipelines_before, "pipelines/ changed");
    assert_eq!(listing(root), root_before, "the service directory changed");
    assert_eq!(std::fs::read(&config).unwrap(), b"# the server's config\n");
    for file in above_files {
        assert!(
            !above.join(file).exists(),
            "{file} written above the service"
        );
    }
    assert_eq!(
        listing(outside.path()),
        BTreeSet::new(),
        "an absolute path was written"
    );
    assert_eq!((tmp_victim("toml"), tmp_victim("toml.new")), victim_before);
    assert_eq!(pipeline_names(&server), stored, "a pipeline was stored");
    for probe in ["..%2Fsluice", "web.prod", "bad%22name"] {
        let reply = server.call("vic", "GET", &format!("/api/v1/pipelines/{probe}"), None);
        assert_eq!(reply.status, 404, "{probe}: {}", reply.text());
    }
}
