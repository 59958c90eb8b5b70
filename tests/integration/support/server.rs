//! An API server in this process on 127.0.0.1, serving `shop` and `logs` to a cast of users:
//! ada (admin), rita (releaser), alice (approver and releaser), bob and carl (approvers, in
//! group approvers), mallory (approver of nothing), vic (viewer).

use serde_json::json;
use sluice::api::client::Reply;
use sluice::service::{Role, config::ApiLimits};
use sluice_testing::{Local, user};

use super::{Api, Latch, TESTKIT, logs_pipeline, shop, token};

pub struct Server {
    pub dir: tempfile::TempDir,
    /// Holds the `logs` pipeline's `wait` task until opened.
    pub latch: Latch,
    /// The service behind the server (for what the API does not show: its health checks).
    pub service: std::sync::Arc<sluice::service::Service>,
    api: Api,
}

impl std::ops::Deref for Server {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Server {
    /// `shop`'s qa approval expires after `timeout`.
    pub fn start(timeout: &str, limits: ApiLimits) -> Self {
        let latch = Latch::start();
        let users: Vec<(String, _)> = [
            user("ada", &[Role::Admin], &[]),
            user("rita", &[Role::Releaser], &[]),
            user("alice", &[Role::Approver, Role::Releaser], &[]),
            user("bob", &[Role::Approver], &["approvers"]),
            user("carl", &[Role::Approver], &["approvers"]),
            user("mallory", &[Role::Approver], &[]),
            user("vic", &[Role::Viewer], &[]),
        ]
        .into_iter()
        .map(|u| (token(&u.name), u))
        .collect();
        let Local {
            dir,
            runtime,
            service,
        } = Local::start(
            TESTKIT,
            &[("shop", &shop(timeout)), ("logs", &logs_pipeline(&latch))],
            &users,
            limits,
        );
        let base = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(sluice::api::serve(
                listener,
                service.clone(),
                std::future::pending(),
            ));
            base
        });
        Self {
            dir,
            latch,
            service,
            api: Api { runtime, base },
        }
    }

    /// Creates a release of `shop` as rita; returns its name.
    pub fn release(&self) -> String {
        let reply = self.call(
            "rita",
            "POST",
            "/api/v1/pipelines/shop/releases",
            Some(json!({})),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
        reply.json()["name"].as_str().unwrap().to_owned()
    }

    /// An admin puts pipeline `name` through the API; the server's reply.
    pub fn put(&self, name: &str, pipeline: &str) -> Reply {
        self.runtime
            .block_on(self.client("ada").send(
                "PUT",
                &format!("/api/v1/pipelines/{name}"),
                Some(pipeline.as_bytes().to_vec()),
                &[],
            ))
            .unwrap()
    }

    /// An admin adds pipeline `name` through the API; rita creates a release of it.
    pub fn put_and_release(&self, name: &str, pipeline: &str) -> String {
        let put = self.put(name, pipeline);
        assert_eq!(put.status, 200, "{}", put.text());
        let path = format!("/api/v1/pipelines/{name}/releases");
        let created = self.call("rita", "POST", &path, Some(json!({})));
        assert_eq!(created.status, 201, "{}", created.text());
        created.json()["name"].as_str().unwrap().to_owned()
    }
}
