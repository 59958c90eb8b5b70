//! The accept loop: every connection served by hyper's HTTP/1.1 with the limits `axum::serve`
//! lacks. A request's head must arrive within `limits.header-timeout` of its first byte (of the
//! connection's start, for the first request), and a body within that long of the handler
//! beginning to read it; a keep-alive connection with no request in flight is closed after
//! `limits.idle-timeout`; at most `limits.connections` are served at once, and one more is
//! answered `503` (JSON, `Connection: close`) and closed, a bounded number at a time. Accept
//! errors (EMFILE) back off and never end the loop. On shutdown: stop accepting, let the
//! requests in flight finish (idle connections close at once; at most `limits.shutdown-grace`),
//! then return.
//!
//! hyper's own `header_read_timeout` is not used: it starts when a connection turns idle, so it
//! would close every idle keep-alive connection after the header timeout, not the idle one.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::IntoResponse as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use super::ApiError;
use super::activity::{Activity, Served, Watched};
use super::tls::ServerTls;

/// The connection limits of `[limits]` in `sluice.toml`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnLimits {
    /// `header-timeout`: for a request's head, and for its body once the handler reads it.
    pub(super) header: Duration,
    /// `idle-timeout`: for a keep-alive connection with no request in flight.
    pub(super) idle: Duration,
    /// `connections`: served at once.
    pub(super) connections: usize,
    /// `shutdown-grace`: how long shutdown waits for requests in flight (a client that stops
    /// reading its answer must not hold the server up for ever).
    pub(super) grace: Duration,
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

/// Serves `router` on `listener` (over TLS with `tls`) within `limits` until `shutdown`
/// completes; then stops accepting, lets the requests in flight finish, and returns.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    tls: Option<ServerTls>,
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
                tokio::spawn(conn.run(stream, tls.clone(), permit));
            }
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(refuse(
                        stream,
                        tls.clone(),
                        limits,
                        permit,
                        stop.subscribe(),
                    ));
                }
                Err(_) => drop(stream),
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    if tokio::time::timeout(limits.grace, stop.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after limits.shutdown-grace ({:?}): cut off",
            limits.grace
        );
    }
    Ok(())
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

    /// Serves the connection (after the TLS handshake, with `tls`) until the client closes
    /// it, a deadline passes or the server shuts down; `_permit` is its place under
    /// `limits.connections`.
    async fn run(self, stream: TcpStream, tls: Option<ServerTls>, _permit: OwnedSemaphorePermit) {
        let watched = Watched {
            stream,
            activity: self.activity.clone(),
        };
        match tls {
            None => self.serve(TokioIo::new(watched)).await,
            Some(tls) => {
                if let Some(stream) = handshake(&tls, watched, self.limits, self.peer).await {
                    self.serve(TokioIo::new(stream)).await;
                }
            }
        }
    }

    async fn serve<I>(mut self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
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

/// The TLS handshake of a connection, within the header timeout; `None` (logged) if it
/// failed or took longer.
async fn handshake<S>(
    tls: &ServerTls,
    stream: S,
    limits: ConnLimits,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(limits.header, tls.acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not done within limits.header-timeout");
            None
        }
    }
}

/// Answers a connection past `limits.connections` (after the TLS handshake, with `tls`): one
/// JSON `503` with `Connection: close`, within the header timeout, then closes it.
async fn refuse(
    stream: TcpStream,
    tls: Option<ServerTls>,
    limits: ConnLimits,
    _permit: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
) {
    match tls {
        None => answer_busy(TokioIo::new(stream), limits, stop).await,
        Some(tls) => {
            let peer = stream
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            if let Some(stream) = handshake(&tls, stream, limits, peer).await {
                answer_busy(TokioIo::new(stream), limits, stop).await;
            }
        }
    }
}

async fn answer_busy<I>(io: I, limits: ConnLimits, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
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
    let conn = builder.serve_connection(io, service);
    tokio::select! {
        _ = tokio::time::timeout(limits.header * 2, conn) => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
}
