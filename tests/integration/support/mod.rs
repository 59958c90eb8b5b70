//! Shared test helpers, one family: the plugins and their host (`plugins`), tiny HTTP servers
//! for plugins to call (`http`), and three ways to serve Sluice — a local engine without HTTP
//! (`engine`), an API server in this process (`server`), a `sluice serve` child process
//! (`process`) — driven through one set of approval helpers (`Approvals`; over HTTP: `api`).

pub mod api;
pub mod engine;
pub mod http;
pub mod plugins;
pub mod process;
pub use sluice_testing::registry;
pub mod scripted;
pub mod server;

pub use api::Api;
pub use engine::Harness;
pub use http::{Latch, TestServer};
pub use plugins::*;
pub use process::{Process, Spawned, service_toml};
pub use scripted::{Canned, Scripted};
pub use server::Server;

/// What the tests do with a served Sluice, however they reach it: the pending approvals,
/// approving one, and a bounded wait woken by each commit.
pub trait Approvals {
    /// The pending approvals' ids, sorted.
    fn pending(&self) -> Vec<String>;

    /// Approves `id` as the approver the harness acts for; panics when refused.
    fn approve(&self, id: &str);

    /// Waits (bounded, woken by each commit) until `ready` holds; panics naming `what` if it
    /// never does.
    fn wait(&self, what: &str, ready: impl FnMut(&Self) -> bool);

    /// Waits until exactly `ids` are pending.
    fn wait_pending(&self, ids: &[String]) {
        let mut want = ids.to_vec();
        want.sort();
        self.wait(&format!("pending = {want:?}"), |s| s.pending() == want);
    }
}

/// What a finished `sluice` process printed: its stdout, then its stderr.
pub fn said(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The bearer token of `user`, in every served Sluice.
pub fn token(user: &str) -> String {
    format!("test-token-of-{user}-0123456789")
}

/// `shop`: two stages, `qa` (pre-approval by alice or the approvers group, with a timeout)
/// then `prod` (pre-approval by alice and bob, in any order).
pub fn shop(timeout: &str) -> String {
    SHOP.replace("TIMEOUT", timeout)
}

const SHOP: &str = r#"
version = 1
name = "shop"

[[stages]]
name = "qa"
pre-approval = { approvers = ["alice", "group:approvers"], timeout = "TIMEOUT" }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }

[[stages]]
name = "prod"
after = ["qa"]
pre-approval = { approvers = ["alice", "bob"], policy = "all" }
[[stages.tasks]]
plugin = "./kit.wasm"
config = { action = "noop" }
"#;

/// `logs`: one stage, two tasks: `wait` logs, waits until `latch` lets it go, logs again;
/// `after` does nothing.
pub fn logs_pipeline(latch: &Latch) -> String {
    format!(
        r#"
version = 1
name = "logs"

[[stages]]
name = "build"
[[stages.tasks]]
name = "wait"
plugin = "./kit.wasm"
config = {{ action = "hold", url = "{}" }}
grants.hosts = ["{}"]
[[stages.tasks]]
name = "after"
plugin = "./kit.wasm"
config = {{ action = "noop" }}
"#,
        latch.url(),
        latch.addr
    )
}

/// Copies the directory `from` into `to`, recursively.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
