//! Two compilers, one sandbox. A large plugin runs Winch's code first (here every plugin is
//! "large": `quick_from = 0`), and that code is held to every limit and grant Cranelift's is;
//! a service's host compiles it with Cranelift in the background and switches to it; a
//! one-shot host keeps Winch's code, cached; and neither compiler's cached code is taken for
//! the other's.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use sluice::plugin::{Compiler, HostConfig, PluginHost, PluginRef, Sandbox, Tiering};
use sluice::types::{Access, Failure, Grants, LimitKind};

use crate::support::{TESTKIT, TestServer, input, tight};

use super::{fixture, limit, plugin_failure, with_dir};

/// Every plugin compiles with Winch, and stays so.
const WINCH_ONLY: Tiering = Tiering {
    quick_from: 0,
    tier_up: false,
};

fn winch_host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| {
        PluginHost::new(HostConfig {
            tiering: WINCH_ONLY,
            ..HostConfig::default()
        })
        .unwrap()
    })
}

/// Runs the testkit, compiled by Winch, with `config` in `sandbox`.
async fn run_on_winch(config: serde_json::Value, sandbox: Sandbox) -> Result<Vec<String>, Failure> {
    let host = winch_host();
    let kit = host.load(&PluginRef::File(TESTKIT.into())).unwrap();
    assert_eq!(
        kit.compiler(),
        Compiler::Winch,
        "the test runs Winch's code"
    );
    let run = host.run_task(&kit, sandbox, &input(config)).await;
    run.result.map(|report| {
        let mut seen: Vec<String> = report.outputs.into_iter().map(|o| o.value).collect();
        seen.extend(run.logs.into_iter().map(|l| l.message));
        seen
    })
}

#[tokio::test]
async fn winch_code_is_held_to_every_limit() {
    let mut quick = tight();
    quick.limits.timeout = Duration::from_millis(300);
    let spin = run_on_winch(json!({"action": "spin"}), quick).await;
    assert_eq!(limit(&spin.unwrap_err()), LimitKind::Time);

    let mut small = tight();
    small.limits.memory = 32 << 20;
    let bomb = run_on_winch(json!({"action": "alloc", "mib": 1024}), small).await;
    assert_eq!(limit(&bomb.unwrap_err()), LimitKind::Memory);

    let deep = run_on_winch(json!({"action": "recurse"}), tight()).await;
    assert_eq!(limit(&deep.unwrap_err()), LimitKind::Stack);

    let huge = run_on_winch(json!({"action": "huge-output", "mib": 1}), tight()).await;
    assert_eq!(limit(&huge.unwrap_err()), LimitKind::Output);

    let trap = run_on_winch(json!({"action": "trap"}), tight()).await;
    assert!(matches!(trap, Err(Failure::Trap(_))), "{trap:?}");
    let panic = run_on_winch(json!({"action": "panic", "message": "boom"}), tight()).await;
    assert!(
        matches!(&panic, Err(Failure::Panic(p)) if p.contains("boom")),
        "{panic:?}"
    );

    let fine = run_on_winch(json!({"action": "alloc", "mib": 8}), tight()).await;
    assert!(
        fine.unwrap().contains(&"8".to_owned()),
        "the host carries on"
    );
}

#[tokio::test]
async fn winch_code_reaches_only_what_is_granted() {
    let f = fixture();
    let granted = with_dir(&f.granted, Access::ReadOnly);
    let read = |path: &str| json!({"action": "read", "path": path});
    let inside = run_on_winch(read("/data/inside.txt"), granted.clone()).await;
    assert!(inside.unwrap().contains(&"inside".to_owned()));
    for escape in ["/data/../secret.txt", "/etc/passwd"] {
        let refused = run_on_winch(read(escape), granted.clone())
            .await
            .unwrap_err();
        assert!(plugin_failure(&refused).contains(escape), "{refused}");
    }
    let write = json!({"action": "write", "path": "/data/new.txt", "content": "x"});
    let refused = run_on_winch(write, granted).await.unwrap_err();
    assert!(!f.granted.join("new.txt").exists(), "{refused}");

    let with_env = Sandbox {
        grants: Grants::none().env("DEPLOY_TARGET", "dev"),
        ..tight()
    };
    let env = |name: &str| json!({"action": "env", "name": name});
    let granted = run_on_winch(env("DEPLOY_TARGET"), with_env.clone()).await;
    assert!(granted.unwrap().contains(&"dev".to_owned()));
    let unset = run_on_winch(env("PATH"), with_env).await.unwrap_err();
    assert!(plugin_failure(&unset).contains("PATH"), "{unset}");

    let server = TestServer::start("ok");
    let http = json!({"action": "http", "url": server.url("/")});
    let denied = run_on_winch(http.clone(), tight()).await.unwrap_err();
    assert!(plugin_failure(&denied).contains("not granted"), "{denied}");
    let mut allowed = tight();
    allowed.grants = Grants::none().host(server.addr.to_string()).unwrap();
    let status = run_on_winch(http, allowed).await.unwrap();
    assert!(status.contains(&"200".to_owned()), "{status:?}");
    assert_eq!(server.hits(), 1, "only the granted call reached the server");
}

/// The cached compilations in `dir`: (compiler, count).
fn cached(dir: &Path, compiler: Compiler) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cwasm") && name.contains(&format!("-{}-", compiler.name())))
        .count()
}

fn host_on(cache: &Path, tiering: Tiering) -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: Some(cache.to_owned()),
        tiering,
        ..HostConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_service_host_switches_a_plugin_to_cranelift_code_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("compiled");
    let host = host_on(
        &cache,
        Tiering {
            quick_from: 0,
            tier_up: true,
        },
    );
    let kit = host.load(&PluginRef::File(TESTKIT.into())).unwrap();
    assert_eq!(kit.compiler(), Compiler::Winch, "the first code is Winch's");
    let echo = input(json!({"action": "warn", "warning": "first"}));
    let first = host.run_task(&kit, tight(), &echo).await;
    assert_eq!(first.result.unwrap().warnings, ["first"]);

    assert!(
        kit.wait_for_cranelift(Duration::from_secs(120)),
        "Cranelift's compilation replaced Winch's"
    );
    let later = host.run_task(&kit, tight(), &echo).await;
    assert_eq!(
        later.result.unwrap().warnings,
        ["first"],
        "and runs the same"
    );
    let mut quick = tight();
    quick.limits.timeout = Duration::from_millis(300);
    let spin = host
        .run_task(&kit, quick, &input(json!({"action": "spin"})))
        .await;
    assert_eq!(limit(&spin.result.unwrap_err()), LimitKind::Time);

    // Cranelift's compilation is cached in place of Winch's: the next process starts on it.
    assert_eq!(cached(&cache, Compiler::Cranelift), 1);
    assert_eq!(cached(&cache, Compiler::Winch), 0);
    let next = host_on(&cache, WINCH_ONLY);
    let kit = next.load(&PluginRef::File(TESTKIT.into())).unwrap();
    assert_eq!(kit.compiler(), Compiler::Cranelift);
}

#[test]
fn a_one_shot_host_caches_winch_code_and_small_plugins_compile_with_cranelift() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("compiled");
    let kit = host_on(&cache, WINCH_ONLY)
        .load(&PluginRef::File(TESTKIT.into()))
        .unwrap();
    assert_eq!(kit.compiler(), Compiler::Winch);
    assert_eq!(cached(&cache, Compiler::Winch), 1);
    let again = host_on(&cache, WINCH_ONLY)
        .load(&PluginRef::File(TESTKIT.into()))
        .unwrap();
    assert_eq!(again.compiler(), Compiler::Winch, "taken from the cache");
    assert_eq!(
        cached(&cache, Compiler::Cranelift),
        0,
        "nothing else compiled"
    );

    // The defaults: the testkit is well under 4 MiB, so Cranelift compiles it.
    let small = host_on(&cache, Tiering::default())
        .load(&PluginRef::File(TESTKIT.into()))
        .unwrap();
    assert_eq!(small.compiler(), Compiler::Cranelift);
    let optimized = host_on(&cache, Tiering::OPTIMIZED)
        .load(&PluginRef::File(TESTKIT.into()))
        .unwrap();
    assert_eq!(optimized.compiler(), Compiler::Cranelift);
    assert_eq!(cached(&cache, Compiler::Cranelift), 1);
}
