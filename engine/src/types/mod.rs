//! Plain values that cross the plugin boundary and that the core, the store, the pipeline and
//! the plugin host all speak: variables, versions, log lines, grants, limits, the size and
//! duration parsers, names (and the paths made from them), text as printers show it. **This module imports neither
//! wasmtime nor redb**, so a reader of the core or the store sees no import of the module that
//! wraps wasmtime; `plugin/` converts these to and from the generated bindings.

pub mod boundary;
pub mod demand;
pub mod grants;
pub mod job;
pub mod limits;
pub mod name;
pub mod sealed;
pub mod text;

pub use boundary::{
    Artifact, Context, Failure, Health, Invocation, Level, LogEvent, LogLine, PluginError, Source,
    TaskInput, TaskReport, Variable, Version,
};
pub use demand::{Capabilities, Demand};
pub use grants::{Access, DirGrant, GrantError, Grants};
pub use limits::{
    LimitExceeded, LimitKind, Limits, MAX_DURATION, format_bytes, millis, parse_bytes,
    parse_duration,
};
pub use name::{NAME_RULE, Name, NameError, PathEscape, path_under};
pub use sealed::Sealed;
pub use text::{Escaped, escape};
