//! `sluice serve`: the service in the foreground, until SIGTERM or Ctrl-C, then drained.

use std::path::PathBuf;

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
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
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
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let grace = config.limits.shutdown_grace;
        let service = Service::start(config)?;
        let address = listener.local_addr()?;
        // Tests and scripts wait for this line.
        eprintln!("sluice: serving on http://{address}");
        tracing::info!(%address, "serving");
        let stopping = service.clone();
        sluice::api::serve(listener, service.clone(), async move {
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

async fn terminated() {
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
