//! What one connection has been doing, for `conn`'s deadlines: its socket's reads (`Watched`),
//! its requests in flight until their responses are written to the end (`Served`, `InFlight`,
//! `Written`), and the body a handler reads (`Waited`). `Activity::deadline` says when the
//! connection is to be closed, and why.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::ConnLimits;

/// What a connection has been doing, kept by its IO, its requests and their bodies; the
/// connection's task reads its deadline from it.
pub(super) struct Activity {
    state: Mutex<State>,
    /// Woken when a deadline may have moved earlier or gone (a head begun, a body being read,
    /// the last request done).
    pub(super) changed: Notify,
}

struct State {
    /// Requests whose response is not yet written to the end.
    in_flight: usize,
    /// Since when nothing is in flight (the connection's start, at first).
    idle_since: Instant,
    /// Whether a request has been served: before one, a connection gets the header timeout
    /// from its start (a client that connects sends its request), not the idle timeout.
    served: bool,
    /// The first byte read while nothing was in flight: a request's head has begun.
    head_started: Option<Instant>,
    /// Since when the handler reads a body that has not ended yet.
    body_started: Option<Instant>,
}

/// Why a connection is closed by the host.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expired {
    Head,
    Body,
    Idle,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                served: false,
                head_started: None,
                body_started: None,
            }),
            changed: Notify::new(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// When the connection is to be closed, and why, as things stand.
    pub(super) fn deadline(&self, limits: ConnLimits) -> Option<(Instant, Expired)> {
        self.with(|s| {
            if s.in_flight > 0 {
                return s.body_started.map(|t| (t + limits.header, Expired::Body));
            }
            match (s.served, s.head_started) {
                (false, _) => Some((s.idle_since + limits.header, Expired::Head)),
                (true, Some(t)) => Some((t + limits.header, Expired::Head)),
                (true, None) => Some((s.idle_since + limits.idle, Expired::Idle)),
            }
        })
    }

    /// Bytes arrived.
    fn read(&self) {
        let moved = self.with(|s| {
            let begun = s.in_flight == 0 && s.served && s.head_started.is_none();
            if begun {
                s.head_started = Some(Instant::now());
            }
            begun
        });
        if moved {
            self.changed.notify_one();
        }
    }
}

/// The connection's socket: every read is activity.
pub(super) struct Watched {
    pub(super) stream: TcpStream,
    pub(super) activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connection's service: the router, with the peer address as `ConnectInfo` (the rate
/// limit and audited refusals read it), each request counted in flight until its response
/// is written to the end.
#[derive(Clone)]
pub(super) struct Served {
    pub(super) router: TowerToHyperService<Router>,
    pub(super) peer: SocketAddr,
    pub(super) activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Served {
    type Response = Response<axum::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(&self.activity);
        let activity = self.activity.clone();
        let mut request = request.map(|body| Waited { body, activity });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let answered = hyper::service::Service::call(&self.router, request);
        Box::pin(async move {
            let response = answered.await?;
            Ok(response.map(|body| {
                axum::body::Body::new(Written {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// One request in flight, from its head until its response is written (or dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.with(|s| {
            s.in_flight += 1;
            s.served = true;
            s.head_started = None;
        });
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.with(|s| {
            s.in_flight -= 1;
            s.body_started = None;
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
        });
        self.0.changed.notify_one();
    }
}

/// A response body: the request stays in flight until it is written to the end.
struct Written {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl HttpBody for Written {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body: from the handler's first read until its end, the clock of
/// `limits.header-timeout` runs, so a body sent byte by byte holds a connection no longer than
/// a head sent so. (A whole pause-based rule would let one byte a pause hold it for ever.)
struct Waited {
    body: Incoming,
    activity: Arc<Activity>,
}

impl Waited {
    fn ended(&self) {
        self.activity.with(|s| s.body_started = None);
    }
}

impl HttpBody for Waited {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let begun = self.activity.with(|s| {
            let begun = s.body_started.is_none() && !self.body.is_end_stream();
            if begun {
                s.body_started = Some(Instant::now());
            }
            begun
        });
        if begun {
            self.activity.changed.notify_one();
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.body.is_end_stream() {
            self.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Waited {
    fn drop(&mut self) {
        self.ended();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: ConnLimits = ConnLimits {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        connections: 1,
        grace: Duration::from_secs(1),
    };

    fn kind(activity: &Activity) -> Option<(Duration, &'static str)> {
        let since = activity.with(|s| s.idle_since);
        activity.deadline(LIMITS).map(|(at, why)| {
            let why = match why {
                Expired::Head => "head",
                Expired::Body => "body",
                Expired::Idle => "idle",
            };
            (at.saturating_duration_since(since), why)
        })
    }

    #[test]
    fn a_connection_gets_the_header_timeout_first_then_idle_then_header_once_a_head_begins() {
        let activity = Activity::new();
        // Fresh: the header timeout from the start, whatever arrives.
        assert_eq!(kind(&activity), Some((LIMITS.header, "head")));
        activity.read();
        assert_eq!(kind(&activity), Some((LIMITS.header, "head")));
        // A request in flight: no deadline, unless its body is being read.
        let request = InFlight::start(&activity);
        assert!(activity.deadline(LIMITS).is_none());
        let started = Instant::now();
        activity.with(|s| s.body_started = Some(started));
        assert!(matches!(
            activity.deadline(LIMITS),
            Some((at, Expired::Body)) if at == started + LIMITS.header
        ));
        // Done: idle, the idle timeout from its end.
        drop(request);
        assert_eq!(kind(&activity), Some((LIMITS.idle, "idle")));
        // The next head's first byte: the header timeout from that byte, sooner than idle.
        activity.read();
        let (at, why) = activity.deadline(LIMITS).unwrap();
        let begun = activity.with(|s| s.head_started).unwrap();
        assert!(matches!(why, Expired::Head) && at == begun + LIMITS.header);
        // Two requests in a row clear it again.
        drop(InFlight::start(&activity));
        assert_eq!(kind(&activity), Some((LIMITS.idle, "idle")));
    }
}
