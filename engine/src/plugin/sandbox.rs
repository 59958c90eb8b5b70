//! The store state of one plugin call, built from its [`Grants`] by a builder that starts
//! empty: only granted directories, environment variables and HTTP hosts are reachable;
//! sockets, name lookup and stdin are off, stdout and stderr become log lines. What the guest
//! makes the host hold is bounded: the resource table's entries and the size of each
//! (`limits::HostShare`), and the host's notes about the guest ([`Notes`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::limits::{HostShare, Limiter};
use super::log::{LogStream, TaskLog};
use crate::types::{Access, GrantError, Grants, Level, Source};

/// Everything a store holds for one call. Dropped with the store when the call ends.
pub(crate) struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    policy: HttpPolicy,
    pub(crate) limiter: Limiter,
    pub(crate) log: Arc<TaskLog>,
    pub(crate) notes: Arc<Notes>,
}

impl State {
    /// Builds the sandbox for one call. Fails only when a granted directory cannot be opened.
    pub(crate) fn new(grants: &Grants, memory: u64, log: Arc<TaskLog>) -> Result<Self, GrantError> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogStream {
            log: log.clone(),
            source: Source::Stdout,
        })
        .stderr(LogStream {
            log: log.clone(),
            source: Source::Stderr,
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
        for (name, value) in &grants.env {
            wasi.env(name, value);
        }
        for dir in &grants.dirs {
            let perms = match dir.access {
                Access::ReadOnly => FsPerms::ReadOnly,
                Access::ReadWrite => FsPerms::ReadWrite,
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| GrantError::Unopenable {
                    path: dir.host.clone(),
                    reason: e.to_string(),
                })?;
        }
        let host = HostShare::of(memory);
        let mut table = ResourceTable::new();
        table.set_max_capacity(host.entries());
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(HostShare::FIELD_BYTES);
        let notes = Arc::new(Notes {
            log: log.clone(),
            count: AtomicU32::new(0),
        });
        Ok(Self {
            wasi: wasi.build(),
            http,
            table,
            policy: HttpPolicy {
                grants: grants.clone(),
                notes: notes.clone(),
            },
            limiter: Limiter::new(memory, &host),
            log,
            notes,
        })
    }
}

/// The host's notes about what it refused the guest, in the task's log. A guest that repeats
/// a refused request gets its first [`Notes::MAX`] noted, then one line saying the rest are not.
pub(crate) struct Notes {
    log: Arc<TaskLog>,
    count: AtomicU32,
}

impl Notes {
    const MAX: u32 = 20;

    pub(crate) fn warn(&self, message: &str) {
        match self.count.fetch_add(1, Ordering::Relaxed) {
            n if n < Self::MAX => self.log.host_note(Level::Warn, message),
            n if n == Self::MAX => self.log.host_note(
                Level::Warn,
                &format!("more than {} refusals; the rest are not noted", Self::MAX),
            ),
            _ => {}
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.policy,
        }
    }
}

/// Lets outbound HTTP out only to granted hosts. wasi:http opens its own connections, outside
/// the WASI socket policy, so this hook is the one place the host allow-list is enforced.
struct HttpPolicy {
    grants: Grants,
    notes: Arc<Notes>,
}

impl WasiHttpHooks for HttpPolicy {
    /// What one write into an outgoing body may hold on the host (charged in `HostShare`).
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        HostShare::CHUNK_BYTES
    }

    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        drop(fut);
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        if !self.grants.allows_host(&host, port) {
            self.notes.warn(&format!(
                "denied outbound request to {host}:{port}: not among the task's granted hosts \
                 (add it to `grants.hosts`)"
            ));
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}
