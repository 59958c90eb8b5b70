//! A local engine: a service in this process, reached without HTTP, serving one pipeline.

use std::sync::Arc;
use std::time::Duration;

use sluice::service::{DecisionRequest, Role, Service, User, config::ApiLimits};
use sluice_testing::{Local, until, user};

use super::{Approvals, TESTKIT, token};

/// A service in this process (no HTTP) serving one pipeline, `web`, whose `./kit.wasm` is the
/// testkit plugin; alice approves.
pub struct Harness {
    _dir: tempfile::TempDir,
    pub runtime: tokio::runtime::Runtime,
    pub service: Arc<Service>,
    pub alice: User,
}

impl Harness {
    pub fn serve(pipeline: &str) -> Self {
        let alice = user("alice", &[Role::Approver], &[]);
        let Local {
            dir,
            runtime,
            service,
        } = Local::start(
            TESTKIT,
            &[("web", pipeline)],
            &[(token("alice"), alice.clone())],
            ApiLimits::default(),
        );
        Self {
            _dir: dir,
            runtime,
            service,
            alice,
        }
    }

    /// Creates a release of `web` (by rita); returns its name.
    pub fn create(&self) -> String {
        let options = sluice::scheduler::CreateOptions {
            creator: "rita".into(),
            ..Default::default()
        };
        self.runtime
            .block_on(self.service.create_release("web", options, None))
            .unwrap()
            .name
    }
}

impl Approvals for Harness {
    fn pending(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .service
            .pending_approvals()
            .into_iter()
            .map(|a| a.id)
            .collect();
        ids.sort();
        ids
    }

    /// Approves as alice.
    fn approve(&self, id: &str) {
        let decision = DecisionRequest {
            approve: true,
            comment: "ok".into(),
            ..DecisionRequest::default()
        };
        self.runtime
            .block_on(self.service.decide(id, &self.alice, decision, None))
            .unwrap();
    }

    /// Woken by the service's commits.
    fn wait(&self, what: &str, mut ready: impl FnMut(&Self) -> bool) {
        let mut commits = self.service.changes();
        let held = self
            .runtime
            .block_on(until(&mut commits, Duration::from_secs(30), || ready(self)));
        assert!(held, "never: {what} (pending: {:?})", self.pending());
    }
}
