//! The accept loop: every connection served by hyper's HTTP/1.1 with the limits `axum::serve`
//! lacks. A request's head must arrive within `limits.header-timeout` of its first byte (of the
//! connection's start, for the first request), and a body within that long of the handler
//! beginning to read it; a keep-alive connection with no request in flight is closed after
//! `limits.idle-timeout`; at most `limits.connections` are served at once, and one more is
//! answered `503` (JSON, `Connection: close`) and closed, a bounded number at a time. Accept
//! errors (EMFILE) back off and never end the loop. On shutdown: stop accepting, let the
//! requests in flight finish (idle connections close at once), then return.
//!
//! hyper's own `header_read_timeout` is not used: it starts when a connection turns idle, so it
//! would close every idle keep-alive connection after the header timeout, not the idle one.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse as _;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use super::ApiError;

/// The connection limits of `[limits]` in `sluice.toml`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnLimits {
    /// `header-timeout`: for a request's head, and for its body once the handler reads it.
    pub(super) header: Duration,
    /// `idle-timeout`: for a keep-alive connection with no request in flight.
    pub(super) idle: Duration,
    /// `connections`: served at once.
    pub(super) connections: usize,
}

/// Headers hyper parses before it refuses a request (with an empty 431): more than the guard's
/// own JSON 431 allows (100), so that the guard answers first.
const MAX_HEADERS: usize = 256;

/// Connections answered `503` at once past the cap; beyond them a connection is closed
/// unanswered, so a flood costs a bounded number of descriptors and tasks.
pub const REFUSING: usize = 16;

/// How long the accept loop waits after an accept error (EMFILE: out of descriptors) before it
/// accepts again, so that it neither spins nor gives up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, lets the requests in flight finish, and returns.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.connections.max(1)));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    // Each connection holds a receiver: `closed()` is every connection ended.
    let (stop, _) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut failures = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    failures += 1;
                    // One line when the failures start, then one every 100 (every ~10 s).
                    if failures % 100 == 1 {
                        tracing::error!(failures, "accepting a connection: {e}; retrying");
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        failures = 0;
        let _ = stream.set_nodelay(true);
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                let conn = Connection::new(router.clone(), peer, limits, stop.subscribe());
                tokio::spawn(conn.run(stream, permit));
            }
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(refuse(stream, limits, permit, stop.subscribe()));
                }
                Err(_) => drop(stream),
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    stop.closed().await;
    Ok(())
}

/// What a connection has been doing, kept by its IO, its requests and their bodies; the
/// connection's task reads its deadline from it.
struct Activity {
    state: Mutex<State>,
    /// Woken when a deadline may have moved earlier or gone (a head begun, a body being read,
    /// the last request done).
    changed: Notify,
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
enum Expired {
    Head,
    Body,
    Idle,
}

impl Activity {
    fn new() -> Arc<Self> {
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
    fn deadline(&self, limits: ConnLimits) -> Option<(Instant, Expired)> {
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

/// One served connection: the router it serves, who it serves, its limits.
struct Connection {
    router: Router,
    peer: SocketAddr,
    limits: ConnLimits,
    activity: Arc<Activity>,
    /// `true` once the server shuts down.
    stop: watch::Receiver<bool>,
}

impl Connection {
    fn new(
        router: Router,
        peer: SocketAddr,
        limits: ConnLimits,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            router,
            peer,
            limits,
            activity: Activity::new(),
            stop,
        }
    }

    /// Serves the connection until the client closes it, a deadline passes or the server
    /// shuts down; `_permit` is its place under `limits.connections`.
    async fn run(mut self, stream: TcpStream, _permit: OwnedSemaphorePermit) {
        let io = TokioIo::new(Watched {
            stream,
            activity: self.activity.clone(),
        });
        let service = Served {
            router: TowerToHyperService::new(self.router.clone()),
            peer: self.peer,
            activity: self.activity.clone(),
        };
        let mut builder = http1::Builder::new();
        builder
            .keep_alive(true)
            .max_headers(MAX_HEADERS)
            .header_read_timeout(None);
        let mut conn = pin!(builder.serve_connection(io, service));
        let mut stopping = false;
        loop {
            let deadline = self.activity.deadline(self.limits);
            let at = deadline.map_or_else(Instant::now, |(at, _)| at);
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(peer = %self.peer, "connection ended: {e}");
                    }
                    return;
                }
                _ = self.stop.wait_for(|stop| *stop), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = self.activity.changed.notified() => {}
                () = tokio::time::sleep_until(at), if deadline.is_some() => {
                    if let Some((at, why)) = self.activity.deadline(self.limits)
                        && at <= Instant::now()
                    {
                        tracing::debug!(peer = %self.peer, ?why, "closing a connection (limits.header-timeout / limits.idle-timeout)");
                        return;
                    }
                }
            }
        }
    }
}

/// The connection's socket: every read is activity.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
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
struct Served {
    router: TowerToHyperService<Router>,
    peer: SocketAddr,
    activity: Arc<Activity>,
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

/// Answers a connection past `limits.connections`: one JSON `503` with `Connection: close`,
/// within the header timeout, then closes it.
async fn refuse(
    stream: TcpStream,
    limits: ConnLimits,
    _permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let connections = limits.connections;
    let service = hyper::service::service_fn(move |_request: Request<Incoming>| async move {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the server is serving its limit of {connections} connections: retry shortly, or raise limits.connections in sluice.toml"
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        Ok::<_, Infallible>(response)
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(false)
        .max_headers(MAX_HEADERS)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = tokio::time::timeout(limits.header * 2, conn) => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
}
