//! Approvals through the service: the views approvers look for, the index of pending ones kept
//! current from the engine's commits (and brought up to the audit trail by `sync_views`),
//! decisions and reassignments as driver commands (who may make them is the core's rule).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use super::{Role, Service, ServiceError, User};
use crate::core::{ApprovalState, Authority, Candidate, Event, Release};
use crate::scheduler::Observer;
use crate::store::Receipt;
pub use crate::store::{ApprovalView, approvals_of};

impl ApprovalView {
    /// Whether `user` is listed on it, by name or through a group.
    pub fn lists(&self, user: &User) -> bool {
        self.approval
            .approvers
            .iter()
            .any(|a| match a.strip_prefix("group:") {
                Some(group) => user.groups.iter().any(|g| g == group),
                None => *a == user.name,
            })
    }
}

/// Pending approvals, by id, kept current from the engine's commits.
#[derive(Default)]
pub(super) struct PendingIndex(RwLock<PendingApprovals>);

#[derive(Default)]
struct PendingApprovals {
    by_id: BTreeMap<String, ApprovalView>,
    /// The revision of each release the index reflects. Updates only move forward, so a
    /// stale copy of a release (a late observer after a sync) changes nothing.
    revisions: HashMap<String, u64>,
    /// The audit trail's length when the index last caught up with it.
    synced: u64,
}

impl PendingIndex {
    pub(super) fn update(&self, release: &Release) {
        let mut index = self.0.write().unwrap_or_else(|e| e.into_inner());
        let PendingApprovals {
            by_id, revisions, ..
        } = &mut *index;
        let revision = revisions.entry(release.name.clone()).or_default();
        if *revision > release.revision {
            return;
        }
        *revision = release.revision;
        let prefix = format!("{}.", release.name);
        by_id.retain(|id, _| !id.starts_with(&prefix));
        for view in approvals_of(release) {
            if view.approval.state == ApprovalState::Pending {
                by_id.insert(view.id.clone(), view);
            }
        }
    }

    /// Whether the index reflects `release` at `revision` or later.
    fn reflects(&self, release: &str, revision: u64) -> bool {
        let index = self.0.read().unwrap_or_else(|e| e.into_inner());
        index.revisions.get(release).is_some_and(|r| *r >= revision)
    }

    pub(super) fn synced(&self) -> u64 {
        self.0.read().unwrap_or_else(|e| e.into_inner()).synced
    }

    pub(super) fn synced_to(&self, len: u64) {
        let mut index = self.0.write().unwrap_or_else(|e| e.into_inner());
        index.synced = index.synced.max(len);
    }
}

impl Observer for PendingIndex {
    fn committed(&self, release: &Release, _what: &str) {
        self.update(release);
    }
}

/// A decision, as an approver makes it.
#[derive(Debug, Clone)]
pub struct DecisionRequest {
    /// Approve or reject.
    pub approve: bool,
    /// Why.
    pub comment: String,
    /// On what authority. The caller has checked the coarse role it takes (approver;
    /// admin for [`Authority::Override`]); the core decides whether this user may decide this
    /// approval.
    pub authority: Authority,
    /// Deploy at this time (Unix milliseconds).
    pub defer_until: Option<u64>,
}

impl Default for DecisionRequest {
    /// A rejection without a comment, as a listed approver.
    fn default() -> Self {
        Self {
            approve: false,
            comment: String::new(),
            authority: Authority::Approver,
            defer_until: None,
        }
    }
}

impl Service {
    /// How many approvals are pending, from the index (nothing copied).
    pub fn pending_count(&self) -> usize {
        let index = self.pending.0.read().unwrap_or_else(|e| e.into_inner());
        index.by_id.len()
    }

    /// Pending approvals, from the index.
    pub fn pending_approvals(&self) -> Vec<ApprovalView> {
        let index = self.pending.0.read().unwrap_or_else(|e| e.into_inner());
        index.by_id.values().cloned().collect()
    }

    /// Brings the pending-approvals index up to every commit in the audit trail so far, so a
    /// client that lists pending approvals after reading an entry sees what the entry says.
    /// An entry is readable from the store the moment its commit is, a moment before the
    /// engine reports the commit to the index; the audit routes call this after they read
    /// entries and before they answer.
    pub fn sync_views(&self) {
        const BATCH: usize = 1024;
        loop {
            let from = self.pending.synced();
            let entries = match self.store().audit_from(from, BATCH) {
                Ok(entries) => entries,
                Err(e) => return tracing::error!("bringing the views up to date: {e}"),
            };
            let Some(last) = entries.last() else {
                return;
            };
            let mut latest: HashMap<&str, u64> = HashMap::new();
            for entry in &entries {
                let revision = latest.entry(&entry.release).or_default();
                *revision = entry.revision.max(*revision);
            }
            for (name, revision) in latest {
                if self.pending.reflects(name, revision) {
                    continue;
                }
                match self.store().release(name) {
                    Ok(Some(release)) => self.pending.update(&release),
                    Ok(None) => {}
                    Err(e) => {
                        return tracing::error!(
                            release = name,
                            "bringing the views up to date: {e}"
                        );
                    }
                }
            }
            self.pending.synced_to(last.seq + 1);
            if entries.len() < BATCH {
                return;
            }
        }
    }

    /// The approval with this id.
    pub fn approval(&self, id: &str) -> Result<ApprovalView, ServiceError> {
        let missing = || ServiceError::NotFound(format!("there is no approval `{id}`"));
        let release = id.split('.').next().ok_or_else(missing)?;
        let release = self.release(release).map_err(|_| missing())?;
        approvals_of(&release)
            .find(|a| a.id == id)
            .ok_or_else(missing)
    }

    /// Decides an approval as `user`. Whether `user` may (listed, not the release's creator,
    /// in turn, not decided already) and whether it is still pending, the core decides at the
    /// moment the decision applies, in order with everything else that happens to the release.
    pub async fn decide(
        &self,
        id: &str,
        user: &User,
        decision: DecisionRequest,
        receipt: Option<Receipt>,
    ) -> Result<Release, ServiceError> {
        let view = self.approval(id)?;
        let event = Event::Decide {
            stage: view.stage.clone(),
            attempt: view.attempt,
            kind: view.approval.kind,
            by: user.name.clone(),
            groups: user.groups.clone(),
            approve: decision.approve,
            comment: decision.comment,
            authority: decision.authority,
            defer_until: decision.defer_until,
        };
        self.decided(&view, event, user, receipt).await
    }

    /// Hands an approval to `to` (a user or `group:NAME`), on `authority` (see
    /// [`DecisionRequest::authority`]). Whether `user` may (listed, not the release's creator)
    /// and whether `to` may be chosen (a known user who may approve, or a group with one; listed
    /// by the stage, by name or through a group, unless an admin overrides) is the core's rule:
    /// the service tells it who the configured users with the approver role are. A `to` that
    /// names nobody is refused before the approval is looked up.
    pub async fn reassign(
        &self,
        id: &str,
        user: &User,
        to: String,
        comment: String,
        authority: Authority,
        receipt: Option<Receipt>,
    ) -> Result<Release, ServiceError> {
        if to.trim().is_empty() {
            return Err(ServiceError::Invalid(
                "`to` names nobody: give a user or group:NAME".into(),
            ));
        }
        let view = self.approval(id)?;
        let event = Event::Reassign {
            stage: view.stage.clone(),
            attempt: view.attempt,
            kind: view.approval.kind,
            by: user.name.clone(),
            groups: user.groups.clone(),
            to,
            candidates: self.candidates(),
            comment,
            authority,
        };
        self.decided(&view, event, user, receipt).await
    }

    /// The configured users who may decide approvals (the approver role; admins have it), by
    /// name: who a reassignment may hand one to.
    fn candidates(&self) -> Vec<Candidate> {
        let users = self.users();
        let mut candidates: Vec<Candidate> = users
            .values()
            .filter(|u| u.has(Role::Approver))
            .map(|u| Candidate {
                name: u.name.clone(),
                groups: u.groups.clone(),
            })
            .collect();
        candidates.sort_by(|a, b| a.name.cmp(&b.name));
        candidates
    }

    /// Submits a decision or reassignment on `view`. The one thing refused here is what the
    /// core cannot tell: an id superseded by a reassignment names its stage, attempt and kind,
    /// which the event would take to the approval that replaced it.
    async fn decided(
        &self,
        view: &ApprovalView,
        event: Event,
        user: &User,
        receipt: Option<Receipt>,
    ) -> Result<Release, ServiceError> {
        if view.approval.state == ApprovalState::Reassigned {
            return Err(ServiceError::Conflict(format!(
                "approval {} is reassigned",
                view.id
            )));
        }
        self.submit(&view.release, event, user, receipt).await
    }
}
