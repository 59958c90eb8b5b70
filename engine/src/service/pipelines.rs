//! The pipelines the service serves: loaded from the pipelines directory at start, checked,
//! replaced through the API (every version kept in the store, the file rewritten atomically).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{InternalError, Service, ServiceError};
use crate::pipeline::{self, Loaded, PipelineError};
use crate::registry::{self, Pin};
use crate::store::StoreError;
use crate::types::{Name, path_under};

/// Why the pipelines directory did not load at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadPipelinesError {
    /// The directory could not be read.
    #[error("pipelines directory {}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A pipeline's file could not be read.
    #[error("{}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A pipeline could not be stored.
    #[error(transparent)]
    Store(StoreError),
    /// Pipelines are invalid: every problem, one a line.
    #[error("{}", lines(.0))]
    Invalid(Vec<PipelineProblem>),
}

/// One pipeline in the directory that does not load.
#[derive(Debug, thiserror::Error)]
pub enum PipelineProblem {
    /// It does not parse, validate, or its plugins do not fit.
    #[error(transparent)]
    Invalid(PipelineError),
    /// Two files define the same pipeline.
    #[error("{} and {} both define pipeline `{name}`: give one another `name`", first.display(), second.display())]
    Duplicate {
        /// The name both use.
        name: String,
        /// The file loaded first.
        first: PathBuf,
        /// The other one.
        second: PathBuf,
    },
}

fn lines(problems: &[PipelineProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// A pipeline the service serves.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Name.
    pub name: String,
    /// The stored version it is.
    pub version: u64,
    /// Its file in the pipelines directory.
    pub file: PathBuf,
    /// Its TOML text.
    pub source: String,
    /// Parsed and validated.
    pub loaded: Loaded,
}

impl Service {
    /// Compiles (or takes from the cache) every plugin of every pipeline served, in the
    /// background, so the first release does not wait for it; a plugin that does not load
    /// after all (an import the host lacks) is logged, and refused when a release is created.
    pub(super) fn warm_plugins(self: &std::sync::Arc<Self>) {
        let service = std::sync::Arc::downgrade(self);
        tokio::task::spawn_blocking(move || {
            let Some(service) = service.upgrade() else {
                return;
            };
            let pipelines: Vec<Pipeline> = service
                .pipelines
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            let warming = std::time::Instant::now();
            for (done, p) in pipelines.iter().enumerate() {
                let started = std::time::Instant::now();
                match pipeline::check_plugins(&p.loaded, service.engine.host()) {
                    // Progress, one line per pipeline: a Python or JS plugin takes seconds.
                    Ok(()) => tracing::info!(
                        pipeline = %p.name,
                        "plugins ready ({} of {} pipelines, {:.1}s)",
                        done + 1,
                        pipelines.len(),
                        started.elapsed().as_secs_f64()
                    ),
                    Err(e) => {
                        tracing::warn!(pipeline = %p.name, "its plugins do not all load: {e}");
                    }
                }
            }
            // A stable line, as `sluice-startup:` is: the store bench waits for it.
            tracing::info!(
                target: "sluice_startup",
                "sluice-warm: the plugins of {} pipelines compiled or cached in {:.1}ms",
                pipelines.len(),
                warming.elapsed().as_secs_f64() * 1e3
            );
        });
    }

    pub(super) fn load_pipelines(&self) -> Result<(), LoadPipelinesError> {
        let dir = &self.config.pipelines;
        let entries = std::fs::read_dir(dir).map_err(|source| LoadPipelinesError::Dir {
            dir: dir.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter_map(|p| {
                if p.is_dir() {
                    Some(p.join("pipeline.toml")).filter(|f| f.is_file())
                } else {
                    (p.extension().is_some_and(|e| e == "toml")).then_some(p)
                }
            })
            .collect();
        files.sort();
        let mut problems = Vec::new();
        let mut pipelines = BTreeMap::new();
        for file in files {
            let mut loaded = match pipeline::load(&file) {
                Ok(loaded) => loaded,
                // Not a pipeline (no `version`, no stages): another kind of TOML file.
                Err(_) if !looks_like_pipeline(&file) => continue,
                Err(e) => {
                    problems.push(PipelineProblem::Invalid(e));
                    continue;
                }
            };
            // Start-up compiles nothing: the plugins are outlined (read, validated, their
            // exports read), then compiled in the background (`warm_plugins`) or at first use.
            // `oci://` plugins are pinned first: a tag the stored version resolved keeps its
            // digest (resolved once; no registry needed to restart), a new one is pulled.
            let known = self.stored_pins(&loaded.plan.name);
            let checked = pipeline::check_grants(&loaded, &self.config.data_dir)
                .and_then(|()| pipeline::check_pools(&loaded, &self.config.pools.names))
                .and_then(|()| self.pin(&mut loaded, &known))
                .and_then(|pins| {
                    pipeline::outline_plugins(&loaded, self.engine.host())?;
                    Ok(pins)
                });
            let pins = match checked {
                Ok(pins) => pins,
                Err(e) => {
                    problems.push(PipelineProblem::Invalid(e));
                    continue;
                }
            };
            let name = loaded.plan.name.clone();
            let source =
                std::fs::read_to_string(&file).map_err(|source| LoadPipelinesError::Read {
                    file: file.clone(),
                    source,
                })?;
            // What is stored names the digests its plan runs.
            let source = registry::pinned_source(&source, &pins);
            let version = self
                .store()
                .put_pipeline(&name, &source, "file")
                .map_err(LoadPipelinesError::Store)?
                .version;
            let pipeline = Pipeline {
                name: name.clone(),
                version,
                file: file.clone(),
                source,
                loaded,
            };
            if let Some(other) = pipelines.insert(name.clone(), pipeline) {
                problems.push(PipelineProblem::Duplicate {
                    name,
                    first: other.file,
                    second: file,
                });
            }
        }
        if !problems.is_empty() {
            return Err(LoadPipelinesError::Invalid(problems));
        }
        *self.pipelines.write().unwrap_or_else(|e| e.into_inner()) = pipelines;
        Ok(())
    }

    /// Every pipeline.
    pub fn pipelines(&self) -> Vec<Pipeline> {
        let pipelines = self.pipelines.read().unwrap_or_else(|e| e.into_inner());
        pipelines.values().cloned().collect()
    }

    /// The pipeline called `name`.
    pub fn pipeline(&self, name: &str) -> Result<Pipeline, ServiceError> {
        let pipelines = self.pipelines.read().unwrap_or_else(|e| e.into_inner());
        pipelines
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("there is no pipeline `{name}`")))
    }

    /// Parses and checks `source` as pipeline `name` without saving it. A `name` that is not a
    /// pipeline's [`Name`] is refused first (`BadRequest`): it would be a file name.
    pub fn validate_pipeline(&self, name: &str, source: &str) -> Result<Loaded, ServiceError> {
        Ok(self.validate_named(&pipeline_name(name)?, source)?.0)
    }

    /// Parses and checks `source` as pipeline `name`, its `oci://` plugins pinned (and pulled):
    /// the plan, and the pins.
    fn validate_named(
        &self,
        name: &Name,
        source: &str,
    ) -> Result<(Loaded, Vec<Pin>), ServiceError> {
        let file = self.pipeline_file(name)?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let shown = format!("{name}.toml");
        let mut loaded =
            pipeline::parse(&shown, source, dir, name).map_err(ServiceError::Pipeline)?;
        if loaded.plan.name != name.as_str() {
            return Err(ServiceError::Invalid(format!(
                "the pipeline says name = \"{}\" but was sent to /pipelines/{name}: make them the same",
                loaded.plan.name
            )));
        }
        pipeline::check_grants(&loaded, &self.config.data_dir).map_err(ServiceError::Pipeline)?;
        pipeline::check_pools(&loaded, &self.config.pools.names).map_err(ServiceError::Pipeline)?;
        let pins = self
            .pin(&mut loaded, &Default::default())
            .map_err(ServiceError::Pipeline)?;
        pipeline::check_plugins(&loaded, self.engine.host()).map_err(ServiceError::Pipeline)?;
        Ok((loaded, pins))
    }

    /// Pins the `oci://` plugins of `loaded`, from the registries `sluice.toml` lists only,
    /// keeping the `known` pins whose components the plugin store has.
    fn pin(
        &self,
        loaded: &mut Loaded,
        known: &BTreeMap<String, String>,
    ) -> Result<Vec<Pin>, PipelineError> {
        registry::pin_known(
            &mut loaded.plan,
            self.engine.host(),
            &self.config.registries,
            known,
        )
    }

    /// The pins of pipeline `name`'s latest stored version (none if it has none, or it cannot
    /// be read: then its tags are resolved again).
    fn stored_pins(&self, name: &str) -> BTreeMap<String, String> {
        match self.store().pipeline_versions(name) {
            Ok(versions) => versions
                .last()
                .map(|v| registry::pins_in(&v.source))
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(pipeline = name, "its stored versions cannot be read: {e}");
                BTreeMap::new()
            }
        }
    }

    /// Validates `source` and makes it pipeline `name`'s next version: stored, and written to
    /// its file (atomically), its `oci://` tags pinned to the digests they resolved to. Releases already created keep their snapshot.
    pub fn put_pipeline(
        &self,
        name: &str,
        source: &str,
        by: &str,
    ) -> Result<Pipeline, ServiceError> {
        let name = pipeline_name(name)?;
        let (loaded, pins) = self.validate_named(&name, source)?;
        // The file and the store keep the digests: a tag is resolved once, when stored.
        let source = &registry::pinned_source(source, &pins);
        let file = self.pipeline_file(&name)?;
        let aside = file.with_extension("toml.new");
        std::fs::write(&aside, source)
            .and_then(|()| std::fs::rename(&aside, &file))
            .map_err(|source| InternalError::WritePipeline {
                path: file.clone(),
                source,
            })?;
        let version = self
            .store()
            .put_pipeline(&name, source, by)
            .map_err(InternalError::Store)?
            .version;
        let pipeline = Pipeline {
            name: name.to_string(),
            version,
            file,
            source: source.to_owned(),
            loaded,
        };
        let mut pipelines = self.pipelines.write().unwrap_or_else(|e| e.into_inner());
        pipelines.insert(name.to_string(), pipeline.clone());
        Ok(pipeline)
    }

    /// The pipeline's file: where it was loaded from, else `NAME.toml` in the pipelines
    /// directory — joined by `path_under`, which checks it stays there.
    fn pipeline_file(&self, name: &Name) -> Result<PathBuf, InternalError> {
        let pipelines = self.pipelines.read().unwrap_or_else(|e| e.into_inner());
        match pipelines.get(name.as_str()) {
            Some(p) => Ok(p.file.clone()),
            None => Ok(path_under(&self.config.pipelines, &[name], ".toml")?),
        }
    }
}

/// A pipeline name from a request (a URL segment): a pipeline's [`Name`], or a 400 that says
/// what names are allowed.
fn pipeline_name(name: &str) -> Result<Name, ServiceError> {
    Name::pipeline(name)
        .map_err(|e| ServiceError::BadRequest(format!("invalid pipeline name: {e}")))
}

fn looks_like_pipeline(file: &Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|t| t.contains("[[stages]]") || t.contains("version"))
}
