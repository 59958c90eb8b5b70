//! The end of start-up: the service reports ready once every release resumed at start has
//! recovered, and logs how long each step took, one line with a stable prefix
//! (`sluice-startup: open=..ms check=..ms repaired=.. host=..ms pipelines=..ms index=..ms resume=..ms
//! recovery=..ms total=..ms resumed=N failed=N`, at
//! info level, target `sluice_startup`) that the restart bench reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Service;
use crate::scheduler::Recovery;

/// How long the steps of start-up before recovery took.
pub(super) struct Startup {
    /// When `Service::start` began.
    pub(super) started: Instant,
    /// Opening the store (the damaged-file check, `check=`, and redb's repair after a crash,
    /// `repaired=true`, included).
    pub(super) opened: Duration,
    /// Starting the plugin host (the wasmtime engine, its linker) and the engine.
    pub(super) host: Duration,
    /// Loading and checking the pipelines.
    pub(super) pipelines: Duration,
    /// Reading the releases for the service's views and the unfinished ones to resume.
    pub(super) index: Duration,
    /// Finding the unfinished releases and starting their drivers (`Engine::serve`).
    pub(super) resume: Duration,
}

/// Marks the service recovered once `recovery` is done (at once when nothing was resumed),
/// logging the start-up's steps.
pub(super) fn await_recovery(service: &Arc<Service>, mut recovery: Recovery, startup: Startup) {
    let recovering = Instant::now();
    if recovery.done() {
        recovered(service, &recovery, &startup, recovering.elapsed());
        return;
    }
    let service = Arc::downgrade(service);
    tokio::spawn(async move {
        recovery.wait().await;
        if let Some(service) = service.upgrade() {
            recovered(&service, &recovery, &startup, recovering.elapsed());
        }
    });
}

fn recovered(service: &Service, recovery: &Recovery, startup: &Startup, took: Duration) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let failed = recovery.failed();
    // Ready first: whoever sees the line below finds `/readyz` 200.
    service.recovered.send_replace(true);
    tracing::info!(
        target: "sluice_startup",
        "sluice-startup: open={:.1}ms check={:.1}ms repaired={} host={:.1}ms pipelines={:.1}ms index={:.1}ms resume={:.1}ms recovery={:.1}ms total={:.1}ms resumed={} failed={failed}",
        ms(startup.opened),
        ms(service.store().opening().checked),
        service.store().opening().repaired,
        ms(startup.host),
        ms(startup.pipelines),
        ms(startup.index),
        ms(startup.resume),
        ms(took),
        ms(startup.started.elapsed()),
        recovery.total(),
    );
    if failed > 0 {
        tracing::error!(
            failed,
            "{failed} of {} unfinished releases did not recover (see the `driver stopped` lines): \
             serving the others; they are tried again at the next start",
            recovery.total()
        );
    }
}
