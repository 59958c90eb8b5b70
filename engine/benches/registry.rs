//! What plugins from an OCI registry cost (run with `cargo bench --bench registry`), against
//! Debian's `docker-registry` started on a free loopback port: pushing a component; pulling it
//! (tag resolved, manifest and layer fetched and verified); pinning a tagged reference whose
//! component the plugin store has (one manifest request); and what pinning adds to a pipeline
//! without `oci://` plugins (every `validate`, `run` and stored pipeline pays it).
//!
//! The components are the built-in `copy` (1.2 MB) and, when `SLUICE_BENCH_COMPONENT` names a
//! file, that one too (e.g. a Python plugin built by `sluice plugin build`, ~18 MB). No target
//! is set by an issue; the figures are in BENCHMARKS.md.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice::plugin::{HostConfig, PluginHost};
use sluice::registry::{self, Client, Credentials, OciRef, Registries};
use sluice_testing::registry::Registry;

mod timing;
use timing::{Stats, report, stats};

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let started = Instant::now();
    let value = f();
    (started.elapsed(), value)
}

fn main() {
    let registry = Registry::start();
    let addr = registry.addr.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new(&addr, Credentials::Anonymous);
    let mut components = vec![(
        "copy".to_owned(),
        sluice::builtin::builtin("copy").unwrap().bytes.to_vec(),
    )];
    if let Ok(path) = std::env::var("SLUICE_BENCH_COMPONENT") {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        components.push(("SLUICE_BENCH_COMPONENT".to_owned(), bytes));
    }
    println!("registry on {addr}");
    for (i, (name, bytes)) in components.iter().enumerate() {
        let mib = bytes.len() as f64 / f64::from(1 << 20);
        println!("{name} ({mib:.1} MiB)");
        let tagged = OciRef::parse(&format!("oci://{addr}/bench/c{i}:1")).unwrap();
        let (first, digest) = timed(|| {
            runtime
                .block_on(registry::push_component(&client, &tagged, bytes))
                .unwrap()
        });
        println!("  {:<34} {first:>10.1?}", "push, first (blobs uploaded)");
        let again = stats(
            (0..20)
                .map(|_| {
                    timed(|| runtime.block_on(registry::push_component(&client, &tagged, bytes))).0
                })
                .collect(),
        );
        report("  push again (blobs there)", &again);
        let pinned = tagged.pinned(digest);
        let n = if bytes.len() > 8 << 20 { 10 } else { 50 };
        let pulls: Stats = stats(
            (0..n)
                .map(|_| {
                    let (took, pulled) = timed(|| {
                        runtime.block_on(registry::pull_component(&client, &pinned, 1 << 30))
                    });
                    assert_eq!(pulled.unwrap().component.len(), bytes.len());
                    took
                })
                .collect(),
        );
        report("  pull (manifest + layer, verified)", &pulls);
        let throughput = bytes.len() as f64 / pulls.median.as_secs_f64() / f64::from(1 << 20);
        println!(
            "  {:<34} {throughput:>10.0} MiB/s",
            "pull throughput (median)"
        );
    }

    // A tag whose component the store has: pinning costs one manifest request.
    let data = tempfile::tempdir().unwrap();
    let host = PluginHost::new(HostConfig::in_data_dir(data.path())).unwrap();
    let registries = Registries::any_from_env();
    let text = format!("oci://{addr}/bench/c0:1");
    let (cold, _) = timed(|| registry::pull(&text, &host, &registries).unwrap());
    println!("pin of a tag, first (pull + keep + compile copy)  {cold:>10.1?}");
    let warm = stats(
        (0..100)
            .map(|_| timed(|| registry::pull(&text, &host, &registries).unwrap()).0)
            .collect(),
    );
    report("pin of a tag, component in the store", &warm);

    // What every pipeline without `oci://` plugins pays.
    let pipeline =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/space-game/pipeline.toml");
    let mut loaded = sluice::pipeline::load(&pipeline).unwrap();
    let none = stats(
        (0..10_000)
            .map(|_| timed(|| registry::pin(&mut loaded.plan, &host, &registries).unwrap()).0)
            .collect(),
    );
    report("pin of a plan without oci:// plugins", &none);
}
