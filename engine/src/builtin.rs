//! The reference plugins, embedded in the `sluice` binary and addressed by name, so one binary
//! is all an operator installs. `engine/build.rs` compiles them.

/// A plugin shipped inside the binary.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The name a pipeline uses: `plugin = "copy"`.
    pub name: &'static str,
    /// What it does, in one line.
    pub summary: &'static str,
    /// The component.
    pub bytes: &'static [u8],
}

/// Every built-in plugin.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "copy",
        summary: "task: copy files from the workspace into a granted directory, atomically",
        bytes: include_bytes!(env!("SLUICE_PLUGIN_COPY")),
    },
    Builtin {
        name: "dir-source",
        summary: "artifact source: versions are the sub-folders of a granted directory",
        bytes: include_bytes!(env!("SLUICE_PLUGIN_DIR_SOURCE")),
    },
    Builtin {
        name: "http-check",
        summary: "task and gate: request a URL, expect a status and optionally body text",
        bytes: include_bytes!(env!("SLUICE_PLUGIN_HTTP_CHECK")),
    },
    Builtin {
        name: "http-request",
        summary: "task: call an HTTP API with retries and keep parts of its JSON answer as outputs",
        bytes: include_bytes!(env!("SLUICE_PLUGIN_HTTP_REQUEST")),
    },
    Builtin {
        name: "http-source",
        summary: "artifact source: versions from a JSON index, downloaded, verified, unpacked safely",
        bytes: include_bytes!(env!("SLUICE_PLUGIN_HTTP_SOURCE")),
    },
    Builtin {
        name: "oci-source",
        summary: "artifact source: tags of an OCI registry repository, pulled and verified by digest",
        bytes: include_bytes!(env!("SLUICE_PLUGIN_OCI_SOURCE")),
    },
    Builtin {
        name: "template",
        summary: "task: render files with #{tokens}# and set keys in JSON, YAML and TOML files",
        bytes: include_bytes!(env!("SLUICE_PLUGIN_TEMPLATE")),
    },
];

/// The built-in plugin called `name`.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}
