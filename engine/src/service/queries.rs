//! The service's read side for the API: listing, filtering and paging releases, approvals and
//! the audit trail, a pipeline's versions, and stored logs. Lists page through the store's
//! indexes (releases by pipeline and state, approvals by state, audit entries by release), so
//! a page costs what it holds, however many releases are stored.

use crate::core::{ApprovalState, ReleaseState};
use crate::store::{AuditEntry, FollowPage, LogKey, PipelineVersion, StoreError, Summary};
use crate::types::LogLine;

use super::{ApprovalView, Service, ServiceError, User, approvals_of};

/// Which releases to list.
#[derive(Debug, Clone, Default)]
pub struct ReleaseFilter {
    /// Only this pipeline's releases.
    pub pipeline: Option<String>,
    /// Only releases in this state.
    pub state: Option<ReleaseState>,
}

/// One page of releases, newest first.
#[derive(Debug, Clone)]
pub struct ReleasePage {
    /// The releases on the page, as summaries.
    pub releases: Vec<Summary>,
    /// How many releases the filter selects, on every page.
    pub total: usize,
}

/// One page of approvals.
#[derive(Debug, Clone)]
pub struct ApprovalPage {
    /// The approvals on the page.
    pub approvals: Vec<ApprovalView>,
    /// How many approvals the filter selects, on every page.
    pub total: usize,
}

/// Which approvals to list.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    /// Approvals in this state; `None` for any.
    pub state: Option<ApprovalState>,
    /// `me` (those the caller is listed on), or a user or `group:NAME` listed as approver.
    pub approver: Option<String>,
    /// Only this release's approvals.
    pub release: Option<String>,
    /// Only this stage's.
    pub stage: Option<String>,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this release's entries.
    pub release: Option<String>,
    /// Entries from this sequence number on (oldest first); without it, the latest `limit`.
    pub from: Option<u64>,
    /// How many entries.
    pub limit: usize,
}

/// Audit entries, oldest first, and where a follower carries on.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// The entries asked for.
    pub entries: Vec<AuditEntry>,
    /// The sequence number of the next entry a follower waits for.
    pub next: u64,
}

impl Service {
    /// A page of the releases `filter` selects, newest first: `limit` of them after `offset`,
    /// read through the index (summaries only).
    pub fn list_releases(
        &self,
        filter: &ReleaseFilter,
        offset: usize,
        limit: usize,
    ) -> Result<ReleasePage, StoreError> {
        let page =
            self.store()
                .release_page(filter.pipeline.as_deref(), filter.state, offset, limit)?;
        Ok(ReleasePage {
            releases: page.releases,
            total: usize::try_from(page.total).unwrap_or(usize::MAX),
        })
    }

    /// A page of the approvals `filter` selects (`limit` after `offset`); `user` is who
    /// `approver = "me"` means. Pending ones come from the in-memory index; of one release,
    /// from its record; the others page through the store's approvals-by-state index, newest
    /// release first.
    pub fn list_approvals(
        &self,
        filter: &ApprovalFilter,
        user: &User,
        offset: usize,
        limit: usize,
    ) -> Result<ApprovalPage, StoreError> {
        let keep = |a: &ApprovalView| {
            filter.state.is_none_or(|s| a.approval.state == s)
                && filter.release.as_ref().is_none_or(|r| &a.release == r)
                && filter.stage.as_ref().is_none_or(|s| &a.stage == s)
                && match filter.approver.as_deref() {
                    None => true,
                    Some("me") => a.lists(user),
                    Some(name) => a.approval.approvers.iter().any(|x| x == name),
                }
        };
        let all = if filter.state == Some(ApprovalState::Pending) {
            // Up to every commit in the trail: a client that began following the trail at its
            // end, then lists what is pending, sees every commit before that end (the engine
            // reports a commit to the view a moment after the store has it).
            self.sync_views();
            self.pending_approvals()
        } else if let Some(release) = &filter.release {
            match self.store().release(release)? {
                Some(release) => approvals_of(&release).collect(),
                None => Vec::new(),
            }
        } else {
            let narrowed = filter.stage.is_some() || filter.approver.is_some();
            let keep: Option<&dyn Fn(&ApprovalView) -> bool> = narrowed.then_some(&keep);
            let page = self
                .store()
                .approval_page(filter.state, offset, limit, keep)?;
            return Ok(ApprovalPage {
                approvals: page.approvals,
                total: usize::try_from(page.total).unwrap_or(usize::MAX),
            });
        };
        let mut approvals: Vec<ApprovalView> = all.into_iter().filter(|a| keep(a)).collect();
        let total = approvals.len();
        approvals = approvals.into_iter().skip(offset).take(limit).collect();
        Ok(ApprovalPage { approvals, total })
    }

    /// Audit entries as `query` asks, with the service's views brought up to them (so what a
    /// client reads next includes what they say). Memory is bounded by `query.limit`: the
    /// trail is read in pages and filtered while it is scanned.
    pub fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let store = self.store();
        let release = query.release.as_deref();
        let scan = match query.from {
            Some(from) => store.audit_forward(from, release, query.limit, usize::MAX)?,
            None => store.audit_latest(release, query.limit)?,
        };
        self.sync_views();
        Ok(AuditPage {
            entries: scan.entries,
            next: scan.next,
        })
    }

    /// Where a follower of the trail starts for `query`, reading nothing it keeps: `from`
    /// itself, or the oldest of the latest `limit` entries (the end of the trail for none).
    pub fn audit_start(&self, query: &AuditQuery) -> Result<u64, StoreError> {
        match query.from {
            Some(from) => Ok(from),
            None => self
                .store()
                .audit_latest_start(query.release.as_deref(), query.limit),
        }
    }

    /// `release`'s entries (every release's when `None`) among the `limit` from `from` on:
    /// one page of a follower, the newest shared by all of them; the views brought up to it.
    pub fn audit_page(
        &self,
        from: u64,
        release: Option<&str>,
        limit: usize,
    ) -> Result<FollowPage, StoreError> {
        let page = self.store().audit_follow(from, release, limit)?;
        // Many followers read the same page: the first brings the views up to it.
        if !page.entries.is_empty() && self.pending.synced() < page.next {
            self.sync_views();
        }
        Ok(page)
    }

    /// Up to `limit` audit entries from sequence number `from` on, every release's.
    pub fn audit_from(&self, from: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.store().audit_from(from, limit)
    }

    /// Every stored version of pipeline `name`, oldest first.
    pub fn pipeline_versions(&self, name: &str) -> Result<Vec<PipelineVersion>, StoreError> {
        self.store().pipeline_versions(name)
    }

    /// One task's stored log; `None` when there is none (yet).
    pub fn task_log(&self, key: &LogKey<'_>) -> Result<Option<Vec<LogLine>>, StoreError> {
        self.store().log(key)
    }

    /// Every stored task log of release `name`, keyed `STAGE/ATTEMPT/TASK`.
    pub fn release_logs(&self, name: &str) -> Result<Vec<(String, Vec<LogLine>)>, ServiceError> {
        self.release(name)?;
        self.store()
            .logs_of(name)
            .map_err(|e| ServiceError::Internal(e.into()))
    }
}
