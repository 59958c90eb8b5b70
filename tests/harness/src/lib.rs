//! sluice-testing (dev-only, never published): the in-process Sluice service that the
//! integration tests and the queue bench both start, and a bounded wait on its commits; and
//! `registry`, a real OCI registry (docker-registry) the tests and the registry bench start.

pub mod registry;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice::service::config::{ApiLimits, Pools};
use sluice::service::{Role, Service, ServiceConfig, User, hash_token};

/// A service in this process on a fresh directory (`pipelines/` and `data/`) and its own
/// two-worker runtime.
pub struct Local {
    pub dir: tempfile::TempDir,
    pub runtime: tokio::runtime::Runtime,
    pub service: Arc<Service>,
}

impl Local {
    /// Serves `pipelines` (name, TOML), next to `kit.wasm`, a copy of the component at
    /// `testkit`; `users` are known by their tokens.
    pub fn start(
        testkit: impl AsRef<Path>,
        pipelines: &[(&str, &str)],
        users: &[(String, User)],
        limits: ApiLimits,
    ) -> Self {
        Self::start_with(testkit, pipelines, users, limits, Pools::default())
    }

    /// As [`Local::start`], with agent `pools`.
    pub fn start_with(
        testkit: impl AsRef<Path>,
        pipelines: &[(&str, &str)],
        users: &[(String, User)],
        limits: ApiLimits,
        pools: Pools,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("pipelines");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(testkit, folder.join("kit.wasm")).unwrap();
        for (name, pipeline) in pipelines {
            std::fs::write(folder.join(format!("{name}.toml")), pipeline).unwrap();
        }
        let config = ServiceConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("data"),
            pipelines: folder,
            tokens: users
                .iter()
                .map(|(token, user)| (hash_token(token), user.clone()))
                .collect(),
            limits,
            plugin_files: Default::default(),
            registries: Default::default(),
            pools,
            tls: None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let service = runtime.block_on(async { Service::start(config).unwrap() });
        Self {
            dir,
            runtime,
            service,
        }
    }
}

/// A user with `roles`, in `groups`.
pub fn user(name: &str, roles: &[Role], groups: &[&str]) -> User {
    User {
        name: name.into(),
        roles: roles.to_vec(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

/// Waits until `ready` holds, checking again after each commit `changes` (from
/// [`Service::changes`], taken before whatever is awaited was set going) hears of; false when
/// `within` passes first or the service stops.
pub async fn until(
    changes: &mut tokio::sync::watch::Receiver<u64>,
    within: Duration,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !ready() {
        let changed = tokio::time::timeout_at(deadline, changes.changed()).await;
        if !matches!(changed, Ok(Ok(()))) {
            return false;
        }
    }
    true
}
