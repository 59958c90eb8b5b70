//! Files that are not files: a task opens only regular files and directories inside its
//! grants (a FIFO would block a host thread past the task's timeout, a device is endless), and
//! the links it creates stay inside the directory they are made in.

use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use serde_json::json;
use sluice::types::{Access, Grants, Invocation, Source, TaskReport};

use crate::support::{output, run_testkit, tight};

use super::{fixture, plugin_failure, with_dir};

/// The host's notes in a task's log.
fn notes(run: &Invocation<TaskReport>) -> String {
    run.logs
        .iter()
        .filter(|line| line.source == Source::Host)
        .map(|line| line.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether anything has the FIFO open for reading: opening its write end without blocking
/// fails with ENXIO exactly when no reader is there.
fn fifo_has_a_reader(fifo: &Path) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .is_ok()
}

#[tokio::test]
async fn a_fifo_inside_a_grant_is_refused_and_nothing_stays_blocked() {
    let f = fixture();
    let fifo = f.granted.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", fifo.display());

    for access in [Access::ReadOnly, Access::ReadWrite] {
        let run = run_testkit(
            json!({"action": "read", "path": "/data/pipe"}),
            with_dir(&f.granted, access),
        )
        .await;
        let failure = run.result.as_ref().unwrap_err();
        let message = plugin_failure(failure);
        assert!(message.contains("cannot read /data/pipe"), "{message}");
        assert!(
            notes(&run).contains("refused to open `pipe`: it is not a regular file or directory"),
            "{:?}",
            run.logs
        );
        assert!(
            !fifo_has_a_reader(&fifo),
            "a host thread still has the FIFO open"
        );
    }
    // Writing (which would block for a reader) is refused the same way.
    let run = run_testkit(
        json!({"action": "write", "path": "/data/pipe", "content": "x"}),
        with_dir(&f.granted, Access::ReadWrite),
    )
    .await;
    assert!(plugin_failure(run.result.as_ref().unwrap_err()).contains("cannot write /data/pipe"));
    assert!(!fifo_has_a_reader(&fifo));
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[tokio::test]
async fn devices_in_a_granted_directory_are_refused() {
    let sandbox = sluice::plugin::Sandbox {
        grants: Grants::none()
            .dir("/dev", "/dev", Access::ReadOnly)
            .unwrap(),
        ..tight()
    };
    for device in ["zero", "null", "urandom"] {
        let path = format!("/dev/{device}");
        let run = run_testkit(json!({"action": "read", "path": path}), sandbox.clone()).await;
        let message = plugin_failure(run.result.as_ref().unwrap_err());
        assert!(
            message.contains(&format!("cannot read {path}")),
            "{message}"
        );
        assert!(
            notes(&run).contains(&format!(
                "refused to open `{device}`: it is a character device"
            )),
            "{:?}",
            run.logs
        );
    }
    // The directory itself is still a directory the task may list.
    let run = run_testkit(json!({"action": "list", "path": "/dev"}), sandbox).await;
    assert!(
        output(&run.result.unwrap(), "entries")
            .unwrap()
            .contains("null")
    );
}

#[tokio::test]
async fn a_link_to_a_device_is_refused() {
    let f = fixture();
    std::os::unix::fs::symlink("/dev/zero", f.granted.join("zero")).unwrap();
    let run = run_testkit(
        json!({"action": "read", "path": "/data/zero"}),
        with_dir(&f.granted, Access::ReadOnly),
    )
    .await;
    let message = plugin_failure(run.result.as_ref().unwrap_err());
    assert!(message.contains("cannot read /data/zero"), "{message}");
}

#[tokio::test]
async fn a_task_cannot_link_outside_its_grant() {
    let f = fixture();
    let escapes = [
        "../../../../etc/passwd",
        "/etc/passwd",
        "../secret.txt",
        "sub/../../secret.txt",
    ];
    for target in escapes {
        let run = run_testkit(
            json!({"action": "symlink", "dir": "/data", "target": target, "link": "served"}),
            with_dir(&f.granted, Access::ReadWrite),
        )
        .await;
        let message = plugin_failure(run.result.as_ref().unwrap_err());
        assert!(
            message.contains(&format!("cannot link served -> {target}")),
            "{message}"
        );
        assert!(
            notes(&run).contains(&format!(
                "refused to create the link `served` -> `{target}`: a link a task creates must \
                 stay inside its directory"
            )),
            "{:?}",
            run.logs
        );
        assert!(
            std::fs::symlink_metadata(f.granted.join("served")).is_err(),
            "no link {target} was left behind"
        );
    }
    let entries: Vec<_> = std::fs::read_dir(&f.granted).unwrap().collect();
    assert_eq!(entries.len(), 1, "only inside.txt remains: {entries:?}");

    // A link that goes down stays inside, and is made.
    let run = run_testkit(
        json!({"action": "symlink", "dir": "/data", "target": "inside.txt", "link": "alias"}),
        with_dir(&f.granted, Access::ReadWrite),
    )
    .await;
    assert_eq!(output(&run.result.unwrap(), "linked"), Some("alias"));
    assert_eq!(
        std::fs::read_link(f.granted.join("alias")).unwrap(),
        Path::new("inside.txt")
    );
}
