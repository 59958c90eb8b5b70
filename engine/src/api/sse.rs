//! Server-sent events: the audit trail as it grows, and a task's log as it is written. A
//! stream keeps a cursor, not a backlog: each wake-up reads one page from it. Every stream
//! holds its [`Slot`] under the caps, ends once it has been open `limits.stream-max` (after the
//! event it is sending), and at once when the server stops; every event has an id, so a
//! client resumes with `Last-Event-ID`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use super::App;
use super::streams::Slot;
use crate::service::LogFollow;
use crate::store::Followed;

/// Entries of the trail looked at per wake-up, at most.
const BATCH: usize = 256;

/// Every audit entry from `next` on (of one release, if given), as they are and as they
/// commit. Each event's id is the entry's sequence number.
pub(super) fn audit(app: Arc<App>, slot: Slot, next: u64, release: Option<String>) -> Response {
    struct Follow {
        app: Arc<App>,
        slot: Slot,
        /// The page being sent; empty (and holding no memory) while the stream waits.
        ready: std::vec::IntoIter<Arc<Followed>>,
        next: u64,
        release: Option<String>,
        /// The trail's length, bumped by every commit that extends it (refusals too). The
        /// one thing a stream wakes for: a page read brings the service's views up to it
        /// (`audit_page`), so a client that looks at them (pending approvals, say) after an
        /// event sees what the event says.
        trail: tokio::sync::watch::Receiver<u64>,
    }
    let trail = app.service.store().audit_len();
    let start = Follow {
        app,
        slot,
        ready: Vec::new().into_iter(),
        next,
        release,
        trail,
    };
    let events = stream::unfold(start, |mut f| async move {
        loop {
            if tokio::time::Instant::now() >= f.slot.until {
                return None;
            }
            if let Some(entry) = f.ready.next() {
                // The entry's JSON, made once for every follower.
                let event = Event::default()
                    .id(entry.seq.to_string())
                    .event("audit")
                    .data(&entry.json);
                return Some((Ok::<_, Infallible>(event), f));
            }
            // Drop the spent page's buffer before reading (or waiting for) the next.
            f.ready = Vec::new().into_iter();
            // Marked seen before the read: a commit after it wakes the wait below.
            f.trail.borrow_and_update();
            match f
                .app
                .service
                .audit_page(f.next, f.release.as_deref(), BATCH)
            {
                Ok(page) => {
                    let moved = page.next != f.next;
                    let found = !page.entries.is_empty();
                    f.next = page.next;
                    f.ready = page.entries.into_iter();
                    if moved && !found {
                        // A page of other releases' entries: let other work run between pages.
                        tokio::task::yield_now().await;
                    }
                    if moved {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!("audit stream: {e}");
                    return None;
                }
            }
            // A stopping server ends its streams, or it could never finish draining.
            tokio::select! {
                grew = f.trail.changed() => grew.ok()?,
                () = f.app.service.stopped() => return None,
                () = tokio::time::sleep_until(f.slot.until) => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A task's log: a `line` event per line (as `sluice logs` prints it: the plugin's text
/// escaped, so each is one `data:` line no newline of the plugin's can split), its id the
/// line's number (from 1), then `end`. Audit events need no escaping here: JSON escapes
/// every newline.
pub(super) fn log(app: Arc<App>, slot: Slot, follow: LogFollow) -> Response {
    let events = stream::unfold(Some((app, slot, follow)), |state| async move {
        let (app, slot, mut follow) = state?;
        if tokio::time::Instant::now() >= slot.until {
            return None;
        }
        let next = tokio::select! {
            next = follow.next() => next,
            // A stopping server ends its streams, or it could never finish draining.
            () = app.service.stopped() => return None,
            () = tokio::time::sleep_until(slot.until) => return None,
        };
        let event = match next {
            Ok(Some(line)) => {
                let event = Event::default()
                    .id(follow.sent().to_string())
                    .event("line")
                    .data(line.to_string());
                return Some((Ok::<_, Infallible>(event), Some((app, slot, follow))));
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
