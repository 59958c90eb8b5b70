//! Creating a release: checking the release-time variables (only settable ones) and the chosen
//! artifacts, picking each artifact's version through its source, recording every plugin's
//! digest, and storing the release with its first stages started in one commit.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Engine, EngineError, run};
use crate::core::{self, ChosenArtifact, Event, Release};
use crate::pipeline::{self, Loaded, PipelineError, Selector};
use crate::plugin::{PluginHost, PluginRef};
use crate::store::{Receipt, now_ms};
use crate::types::Version;

/// How a release is created.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Versions chosen by hand: alias -> version id.
    pub artifacts: BTreeMap<String, String>,
    /// Variables set at release time: only those the pipeline declares `settable = true`.
    pub variables: Vec<(String, String)>,
    /// Who creates it.
    pub creator: String,
    /// Free text.
    pub description: Option<String>,
}

impl Engine {
    /// Creates a release of a loaded pipeline: picks artifact versions through their sources,
    /// records every plugin's digest, stores the snapshot and starts its first stages, storing
    /// `receipt` (if any) in the commit that creates the release.
    pub async fn create_release(
        &self,
        loaded: &Loaded,
        options: CreateOptions,
        receipt: Option<Receipt>,
    ) -> Result<Release, EngineError> {
        // Only variables the plan declares settable: refused before anything is asked or stored.
        loaded.plan.check_release_variables(&options.variables)?;
        pipeline::check_grants(loaded, &self.data_dir)?;
        // Compiling a plugin takes seconds and keeping its bytes writes a file: off the
        // runtime's threads.
        let (host, checked) = (self.host.clone(), loaded.clone());
        let digests = match tokio::task::spawn_blocking(move || keep_plugins(&checked, &host)).await
        {
            Ok(digests) => digests?,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
        let plan = &loaded.plan;
        for alias in options.artifacts.keys() {
            if !plan.artifacts.iter().any(|a| &a.alias == alias) {
                let known: Vec<&str> = plan.artifacts.iter().map(|a| a.alias.as_str()).collect();
                return Err(EngineError::Artifact {
                    alias: alias.clone(),
                    reason: format!(
                        "the pipeline has no such artifact (it has: {})",
                        known.join(", ")
                    ),
                });
            }
        }
        let mut artifacts = Vec::new();
        for spec in &plan.artifacts {
            let version = self
                .choose_version(plan, spec, options.artifacts.get(&spec.alias))
                .await?;
            artifacts.push(ChosenArtifact {
                alias: spec.alias.clone(),
                version,
            });
        }
        let now = now_ms();
        let mut invalid = None;
        let release = self.store.create_release(
            &plan.name,
            &options.creator,
            |number| {
                let mut release = Release::new(core::NewRelease {
                    plan: plan.clone(),
                    number,
                    creator: options.creator.clone(),
                    description: options.description.clone(),
                    artifacts,
                    variables: options.variables.clone(),
                    digests: digests.into_iter().collect(),
                    created_at: now,
                });
                // Start the first stages in the same commit; `drive` finds their effects
                // through `core::recover`, exactly as after a restart.
                if let Err(e) = core::apply(&mut release, Event::Created, now) {
                    invalid = Some(e);
                }
                release
            },
            receipt,
        )?;
        match invalid {
            Some(e) => Err(e.into()),
            None => {
                self.queue_committed(&release);
                Ok(release)
            }
        }
    }

    /// The versions an artifact's source offers, newest first (by version order, then time).
    pub async fn versions(
        &self,
        plan: &pipeline::Plan,
        spec: &pipeline::ArtifactSpec,
    ) -> Result<Vec<Version>, EngineError> {
        let err = |reason: String| EngineError::Artifact {
            alias: spec.alias.clone(),
            reason,
        };
        let plugin = self
            .host
            .load(&PluginRef::parse(&spec.source, Path::new(&plan.dir)))
            .map_err(|e| err(e.to_string()))?;
        let (sandbox, config) =
            run::source_call(plan, spec, &self.data_dir, &self.fence, &self.keys, None)
                .map_err(err)?;
        let mut versions = self
            .host
            .list_versions(&plugin, sandbox, &config)
            .await
            .result
            .map_err(|f| err(format!("listing versions failed: {f}")))?;
        versions.sort_by_key(|v| std::cmp::Reverse(v.created));
        versions.sort_by(|a, b| run::version_order(&b.id, &a.id));
        Ok(versions)
    }

    async fn choose_version(
        &self,
        plan: &pipeline::Plan,
        spec: &pipeline::ArtifactSpec,
        chosen: Option<&String>,
    ) -> Result<Version, EngineError> {
        let err = |reason: String| EngineError::Artifact {
            alias: spec.alias.clone(),
            reason,
        };
        let versions = self.versions(plan, spec).await?;
        let found = match (chosen, &spec.selector) {
            (Some(id), _) => versions.iter().find(|v| &v.id == id),
            (None, Selector::Latest) => versions.first(),
            (None, Selector::Exact(id)) => versions.iter().find(|v| &v.id == id),
            (None, Selector::Branch(b)) => versions.iter().find(|v| v.branch.as_ref() == Some(b)),
            (None, Selector::Tag(t)) => versions.iter().find(|v| v.tags.contains(t)),
        };
        found.cloned().ok_or_else(|| {
            let wanted = match (chosen, &spec.selector) {
                (Some(id), _) => format!("version `{id}`"),
                (None, Selector::Latest) => "any version".into(),
                (None, Selector::Exact(id)) => format!("version `{id}`"),
                (None, Selector::Branch(b)) => format!("a version from branch `{b}`"),
                (None, Selector::Tag(t)) => format!("a version tagged `{t}`"),
            };
            let known: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
            err(format!(
                "the source has no {wanted} (it has: {})",
                known.join(", ")
            ))
        })
    }
}

/// Checks every plugin of `loaded` (compiling what is not compiled), keeps its bytes in the
/// plugin store before the release that names them is stored, and returns their digests.
fn keep_plugins(
    loaded: &Loaded,
    host: &PluginHost,
) -> Result<BTreeMap<String, String>, EngineError> {
    pipeline::check_plugins(loaded, host)?;
    let plan = &loaded.plan;
    let mut digests = BTreeMap::new();
    for reference in plan.plugins() {
        let refused = |e: crate::plugin::LoadError| PipelineError {
            diagnostics: vec![pipeline::Diagnostic {
                message: e.to_string(),
                at: None,
                help: None,
            }],
        };
        let parsed = PluginRef::parse(reference, Path::new(&plan.dir));
        let plugin = host.load(&parsed).map_err(refused)?;
        host.keep(&parsed, &plugin).map_err(refused)?;
        digests.insert(reference.clone(), plugin.digest().to_string());
    }
    Ok(digests)
}
