//! `sluice serve`: the service in the foreground, until SIGTERM or Ctrl-C, then drained. Users
//! and tokens reload from `sluice.toml` on SIGHUP and when the file changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Args;
use sluice::service::{Service, ServiceConfig};

use super::Exit;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// The service configuration.
    #[arg(long, default_value = "sluice.toml")]
    config: PathBuf,
    /// Listen here instead of the configuration's `listen`.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Use this data directory instead of the configuration's `data-dir`.
    #[arg(long = "data-dir", value_parser = super::args::absolute_dir)]
    data_dir: Option<PathBuf>,
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

/// File descriptors kept free of connections: the store, compiled plugins, tasks' files and
/// outbound HTTP, the listener, and the connections answered 503 past the cap
/// (`sluice::api::REFUSING` of them at most).
const RESERVED_FDS: u64 = 64;

/// Raises the soft limit on open files to the hard one, and lowers `limits.connections` if the
/// limit could not hold that many connections and [`RESERVED_FDS`] more, saying so: a full
/// connection table must leave descriptors for everything else.
fn fit_connections(config: &mut ServiceConfig) {
    let Some(files) = raise_file_limit() else {
        return;
    };
    let wanted = config.limits.connections;
    let fits = usize::try_from(files.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if wanted > fits {
        config.limits.connections = fits;
        eprintln!(
            "sluice: warning: limits.connections = {wanted} does not fit the open-file limit of {files} with {RESERVED_FDS} descriptors kept for the store, plugins and health checks: serving at most {fits} connections (raise the limit, e.g. `ulimit -n`, or lower limits.connections)"
        );
        tracing::warn!(
            wanted,
            fits,
            files,
            "limits.connections lowered to the file limit"
        );
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the resulting soft limit, if known.
#[cfg(unix)]
fn raise_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // Refused (e.g. macOS past OPEN_MAX): the soft limit stays as it was.
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    // `rlim_t` is a u64 on Linux and macOS, not on every unix.
    #[allow(clippy::useless_conversion)]
    (limit.rlim_cur != libc::RLIM_INFINITY)
        .then(|| u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX))
}

#[cfg(not(unix))]
fn raise_file_limit() -> Option<u64> {
    None
}

/// How often `sluice.toml` is looked at for a change (its modification time and length).
const CONFIG_POLL: Duration = Duration::from_secs(2);

/// Reloads the users (and tokens) of `path` on SIGHUP or when the file changes, until the
/// service stops. A file that does not load is refused with its errors (each naming its line
/// or user), and the users in force stay; requests and tasks under way are not touched.
async fn reload_users(path: PathBuf, service: Arc<Service>, mut hangup: Option<Hangup>) {
    let stamp = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    };
    let mut seen = stamp(&path);
    let mut poll = tokio::time::interval(CONFIG_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hung_up = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hung_up = {
            let _ = &mut hangup;
            std::future::pending::<Option<()>>()
        };
        let why = tokio::select! {
            _ = service.stopped() => return,
            _ = hung_up => "SIGHUP",
            _ = poll.tick() => {
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                "a change of the file"
            }
        };
        let loaded = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || ServiceConfig::load(&path)).await
        };
        match loaded {
            Ok(Ok(config)) => {
                let users = service.reload_users(&config);
                eprintln!(
                    "sluice: reloaded {users} users from {} ({why})",
                    path.display()
                );
                tracing::info!(users, "reloaded users");
            }
            Ok(Err(problems)) => {
                eprintln!(
                    "sluice: not reloading users ({why}): the users in force stay\n{problems}"
                );
                tracing::error!("not reloading users: {problems}");
            }
            Err(e) => tracing::error!("reloading users: {e}"),
        }
    }
}

/// A listener on `address`, with `SO_REUSEADDR`: a server started again at once (after a
/// crash, say) gets its port back although the connections of the one before linger in
/// TIME_WAIT, so agents and clients that retry find it where it was.
fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Runs the service until SIGTERM or Ctrl-C: then it stops taking requests, lets running
/// tasks finish (up to `limits.shutdown-grace`), and exits 0.
pub(super) fn serve(args: ServeArgs) -> anyhow::Result<Exit> {
    let mut config = ServiceConfig::load(&args.config).map_err(anyhow::Error::msg)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    fit_connections(&mut config);
    let tls = match &config.tls {
        Some(files) => Some(
            sluice::api::tls::ServerTls::load(&files.cert, &files.key)
                .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?,
        ),
        None => None,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener =
            listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let grace = config.limits.shutdown_grace;
        let service = Service::start(config)?;
        let address = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        if tls.is_none()
            && let Some(warning) = sluice::api::tls::plain_http_warning(address)
        {
            eprintln!("sluice: warning: {warning}");
            tracing::warn!("{warning}");
        }
        // Tests and scripts wait for this line.
        eprintln!("sluice: serving on {scheme}://{address}");
        tracing::info!(%address, "serving");
        // Installed before anyone can send SIGHUP expecting a reload (not the default: exit).
        #[cfg(unix)]
        let hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        #[cfg(not(unix))]
        let hangup = None::<()>;
        tokio::spawn(reload_users(args.config.clone(), service.clone(), hangup));
        let stopping = service.clone();
        sluice::api::serve_tls(listener, service.clone(), tls, async move {
            terminated().await;
            stopping.stop_taking_work();
            eprintln!("sluice: stopping: no new requests; letting running tasks finish");
        })
        .await?;
        if !service.drain(grace).await {
            eprintln!(
                "sluice: stopping with tasks still running after {grace:?} (limits.shutdown-grace): they are recovered at the next start"
            );
        }
        anyhow::Ok(())
    })?;
    Ok(Exit::Success)
}

pub(super) async fn terminated() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
