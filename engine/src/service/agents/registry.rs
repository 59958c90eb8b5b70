//! The agents the service has heard from: their pool, capabilities, the token they joined
//! with, when they were last seen, whether an admin disabled them; and why a queued job finds
//! none of them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::types::Capabilities;
use crate::types::demand::{Demand, unmet};

/// One agent, as last heard from.
#[derive(Debug, Clone)]
pub(super) struct AgentRecord {
    pub(super) pool: String,
    pub(super) capabilities: Capabilities,
    /// The sha256 of the token it joined with: another token cannot take its name while it
    /// is online.
    pub(super) token: String,
    pub(super) last_seen: Instant,
    /// Unix milliseconds, for people.
    pub(super) last_seen_at: u64,
}

/// An agent as `GET /api/v1/agents` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct AgentView {
    /// Its name.
    pub name: String,
    /// Its pool.
    pub pool: String,
    /// What it offers.
    pub capabilities: BTreeMap<String, String>,
    /// Seen within its lease (three renewals).
    pub online: bool,
    /// An admin disabled it: it takes no new job.
    pub disabled: bool,
    /// When it was last seen (Unix milliseconds).
    pub last_seen: u64,
    /// The jobs it holds (`RELEASE.STAGE.ATTEMPT`).
    pub jobs: Vec<String>,
}

/// Every agent heard from since the service started, and the disabled names.
#[derive(Debug, Default)]
pub(super) struct Registry {
    pub(super) agents: BTreeMap<String, AgentRecord>,
    pub(super) disabled: BTreeSet<String>,
}

impl Registry {
    /// Whether `name` was seen within `lease`.
    pub(super) fn online(&self, name: &str, lease: Duration) -> bool {
        self.agents
            .get(name)
            .is_some_and(|a| a.last_seen.elapsed() <= lease)
    }

    /// Marks `name` seen now.
    pub(super) fn seen(&mut self, name: &str) {
        if let Some(agent) = self.agents.get_mut(name) {
            agent.last_seen = Instant::now();
            agent.last_seen_at = crate::store::now_ms();
        }
    }

    /// Why no online agent takes a job for `pool` with `demands`: e.g. "no online agent in
    /// pool eu-prod meets region=eu; online: a1 (region=us), a2 (region=us)".
    pub(super) fn why_waiting(&self, pool: &str, demands: &[Demand], lease: Duration) -> String {
        let online: Vec<(&String, &AgentRecord)> = (self.agents.iter())
            .filter(|(name, a)| a.pool == pool && self.online(name, lease))
            .collect();
        let wanted: Vec<String> = demands.iter().map(ToString::to_string).collect();
        let meets = if wanted.is_empty() {
            String::new()
        } else {
            format!(" meets {}", wanted.join(", "))
        };
        if online.is_empty() {
            return format!("no online agent in pool {pool}{meets}");
        }
        let listed: Vec<String> = online
            .iter()
            .map(|(name, agent)| {
                let keys: BTreeSet<&str> = demands.iter().map(|d| d.key.as_str()).collect();
                let mut notes: Vec<String> = (agent.capabilities.iter())
                    .filter(|(k, _)| keys.contains(k.as_str()))
                    .map(|(k, v)| {
                        if v.is_empty() {
                            k.clone()
                        } else {
                            format!("{k}={v}")
                        }
                    })
                    .collect();
                if self.disabled.contains(*name) {
                    notes.push("disabled".into());
                } else if unmet(demands, &agent.capabilities).is_empty() {
                    notes.push("busy".into());
                }
                if notes.is_empty() {
                    (*name).clone()
                } else {
                    format!("{name} ({})", notes.join(", "))
                }
            })
            .collect();
        format!(
            "no free online agent in pool {pool}{meets}; online: {}",
            listed.join(", ")
        )
    }
}
