//! The store state of one plugin call, built from its [`Grants`] by a builder that starts
//! empty: only granted directories, environment variables and HTTP hosts are reachable;
//! sockets, name lookup and stdin are off, stdout and stderr become log lines.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::limits::Limiter;
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
        Ok(Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            policy: HttpPolicy {
                grants: grants.clone(),
                log: log.clone(),
            },
            limiter: Limiter { memory },
            log,
        })
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
    log: Arc<TaskLog>,
}

impl WasiHttpHooks for HttpPolicy {
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
            self.log.host_note(
                Level::Warn,
                &format!(
                    "denied outbound request to {host}:{port}: not among the task's granted \
                     hosts (add it to `grants.hosts`)"
                ),
            );
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
