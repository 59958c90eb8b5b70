//! Files that are not files: inside its grants a task opens only regular files and
//! directories, and the symbolic links it creates stay inside the directory they are made in.
//!
//! wasmtime-wasi opens a path on a blocking host thread. Opening a named pipe blocks that
//! thread until a writer comes, and no timeout can cancel it: the call would end at its time
//! limit, the thread would not, and the engine could not exit. A device (`/dev/zero` in a
//! granted `/dev`) is an endless or a dangerous file. So `open-at` first looks at what the
//! path is (following links as the open would) and refuses FIFOs, sockets, devices and
//! anything unknown with `not-permitted`, before any open.
//!
//! A link a task creates in a read-write grant is served later by whatever reads that
//! directory (a web server deploying it): `../../etc/passwd` there would serve a file outside
//! the grant. So `symlink-at` refuses a target that is absolute or climbs (`..`); a relative
//! target going down, like `current -> releases/7`, is created as asked.
//!
//! Both are overrides of wasmtime-wasi's own functions, defined again in the same linker
//! instance: everything else about the file system, and the rest of these two, is its
//! implementation. No `bindgen!` here: the types are wasmtime-wasi's generated bindings.

use std::path::{Component, Path};

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, DescriptorType, ErrorCode, Host, HostDescriptor, OpenFlags, PathFlags,
};

use super::sandbox::State;

/// The instance wasmtime-wasi 48 defines `wasi:filesystem/types` as. Redefining a function in
/// an instance of another name would define a second instance: the tests in
/// `tests/integration/sandbox/files.rs` fail then.
const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Redefines `open-at` and `symlink-at` in `linker`, after wasmtime-wasi has added its own.
pub(crate) fn guard(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = define(linker);
    linker.allow_shadowing(false);
    result
}

type OpenAt = (
    Resource<Descriptor>,
    PathFlags,
    String,
    OpenFlags,
    DescriptorFlags,
);

fn define(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    let mut types = linker.instance(TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store, (fd, path_flags, path, oflags, flags): OpenAt| {
            Box::new(async move {
                let notes = store.data().notes.clone();
                let mut view = store.data_mut().filesystem();
                let this = Resource::new_borrow(fd.rep());
                let kind = view
                    .stat_at(this, path_flags, path.clone())
                    .await
                    .map(|stat| stat.type_);
                if let Ok(kind) = kind
                    && let Some(what) = not_a_file(kind)
                {
                    notes.warn(&format!(
                        "refused to open `{path}`: it is {what}; a task may open only regular \
                         files and directories inside its grants"
                    ));
                    return Ok((Err(ErrorCode::NotPermitted),));
                }
                let opened = view.open_at(fd, path_flags, path, oflags, flags).await;
                Ok((match opened {
                    Ok(descriptor) => Ok(descriptor),
                    Err(error) => Err(view.convert_error_code(error)?),
                },))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store, (fd, target, link): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                let state = store.data_mut();
                if climbs(&target) {
                    state.notes.warn(&format!(
                        "refused to create the link `{link}` -> `{target}`: a link a task creates \
                         must stay inside its directory (a relative target without `..`)"
                    ));
                    return Ok((Err(ErrorCode::NotPermitted),));
                }
                let mut view = state.filesystem();
                Ok((match view.symlink_at(fd, target, link).await {
                    Ok(()) => Ok(()),
                    Err(error) => Err(view.convert_error_code(error)?),
                },))
            })
        },
    )?;
    Ok(())
}

/// What a path is, for the refusal, unless it is something a task may open. A link is let
/// through: it is there only when the open does not follow links, and then fails the open.
fn not_a_file(kind: DescriptorType) -> Option<&'static str> {
    match kind {
        DescriptorType::RegularFile | DescriptorType::Directory | DescriptorType::SymbolicLink => {
            None
        }
        DescriptorType::Fifo => Some("a named pipe (FIFO)"),
        DescriptorType::Socket => Some("a socket"),
        DescriptorType::CharacterDevice => Some("a character device"),
        DescriptorType::BlockDevice => Some("a block device"),
        // What wasmtime-wasi calls a named pipe or a socket.
        DescriptorType::Unknown => Some("not a regular file or directory (a named pipe, a socket)"),
    }
}

/// Whether a link target could reach outside the link's directory: absolute, or with `..`.
fn climbs(target: &str) -> bool {
    Path::new(target).components().any(|c| {
        matches!(
            c,
            Component::RootDir | Component::ParentDir | Component::Prefix(_)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_targets_going_down_are_linked() {
        for target in ["releases/7", "./current", "a/./b", "file.txt", "a//b"] {
            assert!(!climbs(target), "{target}");
        }
        for target in ["../secret", "/etc/passwd", "a/../../b", "a/..", "..", "//x"] {
            assert!(climbs(target), "{target}");
        }
    }

    #[test]
    fn only_files_and_directories_are_opened() {
        assert_eq!(not_a_file(DescriptorType::RegularFile), None);
        assert_eq!(not_a_file(DescriptorType::Directory), None);
        for kind in [
            DescriptorType::Fifo,
            DescriptorType::Socket,
            DescriptorType::CharacterDevice,
            DescriptorType::BlockDevice,
            DescriptorType::Unknown,
        ] {
            assert!(not_a_file(kind).is_some(), "{kind:?}");
        }
    }
}
