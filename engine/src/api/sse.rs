//! Server-sent event streams: the audit trail as it grows, and a task's log as it is written.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use super::App;
use crate::service::LogFollow;
use crate::store::AuditEntry;

/// Entries read from the store per wake-up.
const BATCH: usize = 256;

/// `backlog`, then every audit entry from `next` on as it commits (of one release, if given).
/// Each event's id is the entry's sequence number: a client that reconnects with
/// `Last-Event-ID` carries on after it.
pub(super) fn audit(
    app: Arc<App>,
    backlog: Vec<AuditEntry>,
    next: u64,
    release: Option<String>,
) -> Response {
    struct Follow {
        app: Arc<App>,
        ready: std::vec::IntoIter<AuditEntry>,
        next: u64,
        release: Option<String>,
        /// Bumped once the service's views include a commit, so a client that looks at
        /// them (pending approvals, say) after an event sees what the event says.
        changes: tokio::sync::watch::Receiver<u64>,
    }
    let changes = app.service.changes();
    let start = Follow {
        app,
        ready: backlog.into_iter(),
        next,
        release,
        changes,
    };
    let events = stream::unfold(start, |mut f| async move {
        loop {
            if let Some(entry) = f.ready.next() {
                let event = Event::default()
                    .id(entry.seq.to_string())
                    .event("audit")
                    .json_data(&entry);
                return Some((event, f));
            }
            match f.app.service.audit_from(f.next, BATCH) {
                Ok(mut entries) if !entries.is_empty() => {
                    f.app.service.sync_views();
                    f.next = entries.last().map_or(f.next, |e| e.seq + 1);
                    entries.retain(|e| f.release.as_ref().is_none_or(|r| &e.release == r));
                    f.ready = entries.into_iter();
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!("audit stream: {e}");
                    return None;
                }
            }
            // A stopping server ends its streams, or it could never finish draining.
            tokio::select! {
                changed = f.changes.changed() => changed.ok()?,
                () = f.app.service.stopped() => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A task's log: a `line` event per line (as `sluice logs` prints it: the plugin's text
/// escaped, so each is one `data:` line no newline of the plugin's can split), then `end`.
/// Audit events need no escaping here: JSON escapes every newline.
pub(super) fn log(app: Arc<App>, follow: LogFollow) -> Response {
    let events = stream::unfold(Some((app, follow)), |state| async move {
        let (app, mut follow) = state?;
        let next = tokio::select! {
            next = follow.next() => next,
            // A stopping server ends its streams, or it could never finish draining.
            () = app.service.stopped() => return None,
        };
        let event = match next {
            Ok(Some(line)) => {
                let event = Event::default().event("line").data(line.to_string());
                return Some((Ok::<_, Infallible>(event), Some((app, follow))));
            }
            Ok(None) => Event::default().event("end").data("the task ended"),
            Err(e) => {
                tracing::error!("log stream: {e}");
                Event::default()
                    .event("error")
                    .data("internal error: the log could not be read")
            }
        };
        Some((Ok(event), None))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
