//! Plugin files as an attacker names them: a file outside the allowed roots (or missing), a
//! symlink or `..` out of them, a device, a FIFO, a directory, a huge file, a file that is not
//! WebAssembly, a compilation past its time. Each is refused with a message that names the
//! fix and quotes none of the file's bytes, and nothing is read or compiled.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice::plugin::{FileError, FilePolicy, HostConfig, LoadError, PluginHost, PluginRef};

use crate::support::TESTKIT;

fn host_with(policy: FilePolicy) -> PluginHost {
    PluginHost::new(HostConfig {
        files: policy,
        ..HostConfig::default()
    })
    .unwrap()
}

/// A host whose plugin files must lie under `root` (service mode).
fn confined(root: &Path) -> PluginHost {
    host_with(FilePolicy {
        roots: Some(vec![root.to_owned()]),
        ..FilePolicy::default()
    })
}

fn load_err(host: &PluginHost, path: impl Into<PathBuf>) -> LoadError {
    match host.load(&PluginRef::File(path.into())) {
        Ok(plugin) => panic!("expected a refusal, loaded {plugin:?}"),
        Err(e) => e,
    }
}

/// A file outside the roots, present or missing, gets one answer, naming only the path.
#[test]
fn a_plugin_outside_the_plugin_directories_gets_the_same_answer_as_a_missing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pipelines");
    std::fs::create_dir(&root).unwrap();
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "root:x:0:0:TOP-SECRET").unwrap();
    let host = confined(&root);
    let answer = |path: &Path| {
        let err = load_err(&host, path);
        assert!(
            matches!(err, LoadError::File(FileError::NotAllowed(_))),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            !text.contains("TOP-SECRET") && !text.contains("0x72"),
            "{text}"
        );
        text.replace(&path.display().to_string(), "PATH")
    };
    let existing = answer(&secret);
    assert_eq!(existing, answer(&tmp.path().join("missing.wasm")));
    assert_eq!(existing, answer(Path::new("/etc/passwd")));
    assert_eq!(existing, answer(&root.join("missing.wasm")));
    // `..` and a symlink lead out of the roots: the same answer.
    assert_eq!(existing, answer(&root.join("../secret.txt")));
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, root.join("link.wasm")).unwrap();
        assert_eq!(existing, answer(&root.join("link.wasm")));
    }
    assert!(
        existing.contains("pipelines directory or a directory listed in `plugin-dirs`"),
        "{existing}"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "root:x:0:0:TOP-SECRET"
    );

    // A component inside the roots loads.
    std::fs::copy(TESTKIT, root.join("kit.wasm")).unwrap();
    host.load(&PluginRef::File(root.join("kit.wasm"))).unwrap();
}

/// `/dev/zero`, a FIFO with no writer and a directory are refused at once, in every mode,
/// without reading (a FIFO would otherwise block the loader forever).
#[test]
fn a_device_a_fifo_or_a_directory_is_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host_with(FilePolicy::default());
    let mut refused = vec![tmp.path().to_owned()];
    #[cfg(unix)]
    {
        refused.push("/dev/zero".into());
        let fifo = tmp.path().join("plugin.wasm");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        refused.push(fifo);
    }
    for path in refused {
        let err = load_err(&host, &path);
        assert!(
            matches!(err, LoadError::File(FileError::NotAFile(_))),
            "{err}"
        );
        assert!(err.to_string().contains("is not a regular file"), "{err}");
    }
}

/// A file larger than `limits.plugin-size` is refused before it is read.
#[test]
fn a_plugin_larger_than_the_size_limit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.wasm");
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.resize(4096, 0);
    std::fs::write(&big, &bytes).unwrap();
    let host = host_with(FilePolicy {
        max_size: 4095,
        ..FilePolicy::default()
    });
    let err = load_err(&host, &big);
    assert!(
        matches!(
            err,
            LoadError::File(FileError::TooLarge { limit: 4095, .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("raise `limits.plugin-size`"),
        "{err}"
    );
    // At the limit, the size is not the problem.
    let host = host_with(FilePolicy {
        max_size: 4096,
        ..FilePolicy::default()
    });
    assert!(matches!(load_err(&host, &big), LoadError::Compile { .. }));
}

/// A text file is "not a WebAssembly component", never wasmparser's message quoting its bytes.
#[test]
fn a_file_that_is_not_webassembly_is_refused_without_quoting_it() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("passwd.wasm");
    std::fs::write(&text, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let host = host_with(FilePolicy::default());
    let err = load_err(&host, &text);
    assert!(
        matches!(err, LoadError::File(FileError::NotWasm(_))),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("is not a WebAssembly component"),
        "{message}"
    );
    for leak in ["0x72", "0x6f", "actual", "magic", "root:"] {
        assert!(!message.contains(leak), "{leak} in {message}");
    }
}

/// A load whose compilation outlasts the budget fails, saying so; the host keeps working.
#[test]
fn a_compilation_past_its_time_budget_fails_and_says_so() {
    let host = host_with(FilePolicy {
        compile_time: Duration::ZERO,
        compilations: 1,
        ..FilePolicy::default()
    });
    let err = load_err(&host, TESTKIT);
    assert!(
        matches!(err, LoadError::File(FileError::CompileTime { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("did not finish within 0s"),
        "{err}"
    );
    // The built-ins and the same file still load on a host with time to compile.
    let patient = host_with(FilePolicy {
        compilations: 1,
        ..FilePolicy::default()
    });
    patient.load(&PluginRef::File(TESTKIT.into())).unwrap();
}
