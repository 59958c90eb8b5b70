//! The one `bindgen!` of the engine, over the `engine` world of `wit/` (every export a plugin
//! may have), and conversions between the generated types and the host's own types in
//! [`super::api`], so nothing outside this module sees generated code.

use crate::types as api;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "engine",
    imports: { default: trappable },
    exports: { default: async },
});

pub(crate) use self::exports::sluice::plugin::{artifact_source, gate, task};
pub(crate) use self::sluice::plugin::{log, types};

impl From<&api::Variable> for types::Variable {
    fn from(v: &api::Variable) -> Self {
        Self {
            name: v.name.clone(),
            value: v.value.clone(),
            secret: v.secret,
        }
    }
}

impl From<&api::Version> for types::VersionInfo {
    fn from(v: &api::Version) -> Self {
        Self {
            id: v.id.clone(),
            created: v.created,
            branch: v.branch.clone(),
            tags: v.tags.clone(),
            commit: v.commit.clone(),
            metadata: v.metadata.clone(),
        }
    }
}

impl From<types::VersionInfo> for api::Version {
    fn from(v: types::VersionInfo) -> Self {
        Self {
            id: v.id,
            created: v.created,
            branch: v.branch,
            tags: v.tags,
            commit: v.commit,
            metadata: v.metadata,
        }
    }
}

impl From<&api::Context> for types::ReleaseContext {
    fn from(c: &api::Context) -> Self {
        Self {
            pipeline: c.pipeline.clone(),
            release: c.release.clone(),
            release_number: c.release_number,
            stage: c.stage.clone(),
            attempt: c.attempt,
            artifacts: c
                .artifacts
                .iter()
                .map(|a| types::Artifact {
                    alias: a.alias.clone(),
                    version: (&a.version).into(),
                    path: a.path.clone(),
                })
                .collect(),
            workspace: c.workspace.clone(),
        }
    }
}

impl From<types::Error> for api::PluginError {
    fn from(e: types::Error) -> Self {
        match e {
            types::Error::InvalidConfig(m) => Self::InvalidConfig(m),
            types::Error::Failed(m) => Self::Failed(m),
        }
    }
}

impl From<task::Report> for api::TaskReport {
    fn from(r: task::Report) -> Self {
        Self {
            warnings: r.warnings,
            outputs: r
                .outputs
                .into_iter()
                .map(|o| api::Variable {
                    name: o.name,
                    value: o.value,
                    secret: o.secret,
                    // Only the scheduler seals: whatever a plugin returns is a clear value.
                    sealed: None,
                })
                .collect(),
        }
    }
}

impl From<gate::Health> for api::Health {
    fn from(h: gate::Health) -> Self {
        match h {
            gate::Health::Healthy => Self::Healthy,
            gate::Health::Unhealthy(why) => Self::Unhealthy(why),
        }
    }
}

impl From<log::Level> for api::Level {
    fn from(l: log::Level) -> Self {
        match l {
            log::Level::Trace => Self::Trace,
            log::Level::Debug => Self::Debug,
            log::Level::Info => Self::Info,
            log::Level::Warn => Self::Warn,
            log::Level::Error => Self::Error,
        }
    }
}
