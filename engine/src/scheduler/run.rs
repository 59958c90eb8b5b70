//! Acting on `Prepare`, `RunTask` and `EvaluateGates`: a fresh workspace with the release's
//! artifacts fetched by their sources, then each task (and each gate) in its own sandbox, built from the pipeline's grants with
//! `$(...)` resolved. A plugin whose digest changed since the release was created is refused.

use std::cmp::Ordering;
use std::path::Path;
use std::sync::Arc;

use super::vars::Scope;
use super::{Engine, Observer};
use crate::core::{ApprovalKind, GateResult, Release, TaskOutcome};
use crate::pipeline::{ArtifactSpec, Fence, GateSpec, GrantSpec, Plan};
use crate::plugin::{Digest, Plugin, PluginRef, Sandbox};
use crate::secrets::Keyring;
use crate::store::LogKey;
use crate::types::{
    Access, Artifact, Context, Grants, Health, Limits, LogLine, TaskInput, Version,
};

/// The digest recorded for `reference` when the release was created.
pub(super) fn recorded_digest(release: &Release, reference: &str) -> Option<Digest> {
    release
        .digests
        .iter()
        .find(|(r, _)| r == reference)
        .and_then(|(_, d)| Digest::parse(d))
}

impl Engine {
    /// Loads a plugin of the release: the bytes the plugin store keeps under the digest the
    /// release recorded; for a release from before the store, the file, checked against it.
    pub(super) fn release_plugin(
        &self,
        release: &Release,
        reference: &str,
    ) -> Result<Arc<Plugin>, String> {
        if let Some(recorded) = recorded_digest(release, reference)
            && let Some(kept) = self
                .host
                .load_kept(&recorded, reference)
                .map_err(|e| e.to_string())?
        {
            return Ok(kept);
        }
        let plugin = self
            .host
            .load(&PluginRef::parse(reference, Path::new(&release.plan.dir)))
            .map_err(|e| e.to_string())?;
        if let Some(recorded) = recorded_digest(release, reference)
            && recorded != plugin.digest()
        {
            return Err(format!(
                "plugin `{reference}` changed since release {} was created (recorded {recorded}, now {}): \
                 refusing to deploy it; create a new release to use the new plugin",
                release.name,
                plugin.digest()
            ));
        }
        Ok(plugin)
    }

    /// Creates a fresh workspace and fetches every artifact of the release into it.
    pub(super) async fn prepare(
        &self,
        release: &Release,
        stage: &str,
        attempt: u32,
    ) -> Result<(), String> {
        let workspace = self.workspace(&release.name, stage, attempt)?;
        if workspace.exists() {
            std::fs::remove_dir_all(&workspace)
                .map_err(|e| format!("cannot clear workspace {}: {e}", workspace.display()))?;
        }
        // With nothing to fetch, the workspace is made when a task is granted it (`run_task`):
        // a directory per stage costs more than a no-op task on a busy file system.
        if release.artifacts.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&workspace)
            .map_err(|e| format!("cannot create workspace {}: {e}", workspace.display()))?;
        for chosen in &release.artifacts {
            let spec = release
                .plan
                .artifacts
                .iter()
                .find(|a| a.alias == chosen.alias)
                .ok_or_else(|| {
                    format!("artifact `{}` is not in the release's plan", chosen.alias)
                })?;
            let plugin = self.release_plugin(release, &spec.source)?;
            let into = workspace.join(&chosen.alias);
            std::fs::create_dir_all(&into)
                .map_err(|e| format!("cannot create {}: {e}", into.display()))?;
            let (sandbox, config) = source_call(
                &release.plan,
                spec,
                &self.data_dir,
                &self.fence,
                &self.keys,
                Some(&into),
            )?;
            let fetched = self
                .host
                .fetch(
                    &plugin,
                    sandbox,
                    &config,
                    fetch_as(&chosen.version),
                    "/artifact",
                )
                .await;
            fetched.result.map_err(|f| {
                format!(
                    "fetching artifact `{}` version {} failed: {f}",
                    chosen.alias, chosen.version.id
                )
            })?;
        }
        Ok(())
    }

    /// Runs one task; any failure becomes the task's failure. Returns the outcome and the log
    /// (stored with the transition that records the outcome).
    pub(super) async fn run_task(
        &self,
        release: &Release,
        stage: &str,
        attempt: u32,
        index: usize,
        observer: Arc<dyn Observer>,
    ) -> (TaskOutcome, Vec<LogLine>) {
        let Some(stage_index) = release.plan.stages.iter().position(|s| s.name == stage) else {
            return (
                TaskOutcome::Failed(format!("stage `{stage}` is not in the plan")),
                Vec::new(),
            );
        };
        let spec = &release.plan.stages[stage_index].tasks[index];
        let workspace = match self.workspace(&release.name, stage, attempt) {
            Ok(workspace) => workspace,
            Err(why) => return (TaskOutcome::Failed(why), Vec::new()),
        };
        let prepared = async {
            let mkdir = |dir: &Path| {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create workspace {}: {e}", dir.display()))
            };
            // A release without artifacts has an empty workspace. Read-only, one shared empty
            // directory is the same thing to the task, without a directory per stage.
            let shared_empty = self.data_dir.join("workspaces").join(".empty");
            let granted = match spec.grants.workspace {
                Some(Access::ReadOnly) if release.artifacts.is_empty() && !workspace.exists() => {
                    mkdir(&shared_empty)?;
                    Some(shared_empty.as_path())
                }
                Some(_) => {
                    mkdir(&workspace)?;
                    Some(workspace.as_path())
                }
                None => None,
            };
            if spec
                .grants
                .dirs
                .iter()
                .any(|d| d.host.contains("$(sluice.workspace)"))
            {
                mkdir(&workspace)?;
            }
            let scope = Scope::for_task(
                release,
                stage_index,
                attempt,
                &self.data_dir,
                &workspace,
                &self.keys,
            )?;
            let plugin = self.release_plugin(release, &spec.plugin)?;
            let config = scope.substitute_json(&spec.config)?;
            // The deployment's own workspace is the one place under the data directory a
            // grant may name (`$(sluice.workspace)/...`).
            let fence = self.fence.with_workspace(&workspace);
            let workspace = granted.map(|dir| (dir, super::vars::WORKSPACE));
            let grants = grants(
                &spec.grants,
                &|text| scope.substitute_grant(text),
                workspace,
                &fence,
            )?;
            Ok::<_, String>((scope, plugin, config, grants))
        };
        let (scope, plugin, config, grants) = match prepared.await {
            Ok(parts) => parts,
            Err(why) => return (TaskOutcome::Failed(why), Vec::new()),
        };
        let workspace_granted = spec.grants.workspace.is_some();
        let input = TaskInput {
            config: config.to_string(),
            context: context(release, stage, attempt, workspace_granted),
            variables: scope.variables(),
        };
        let (release_name, stage_name, task_name) =
            (release.name.clone(), stage.to_owned(), spec.name.clone());
        let attempt_number = attempt;
        let sink_observer = observer.clone();
        let sandbox = Sandbox {
            grants,
            limits: spec.limits,
            mask: scope.secrets(),
            sink: Some(Arc::new(move |event| {
                let key = LogKey {
                    release: &release_name,
                    stage: &stage_name,
                    attempt: attempt_number,
                    task: &task_name,
                };
                sink_observer.task_event(&key, event);
            })),
        };
        let mut invocation = self.host.run_task(&plugin, sandbox, &input).await;
        let outcome = match invocation.result {
            Ok(report) => {
                let logs = &mut invocation.logs;
                self.finish_report(release, stage, attempt, &spec.name, logs, report)
            }
            Err(failure) => TaskOutcome::Failed(failure.to_string()),
        };
        (outcome, invocation.logs)
    }

    /// A task's report as stored: its secret outputs masked in its log and sealed, never kept
    /// in clear.
    pub(super) fn finish_report(
        &self,
        release: &Release,
        stage: &str,
        attempt: u32,
        task: &str,
        logs: &mut [LogLine],
        mut report: crate::types::TaskReport,
    ) -> TaskOutcome {
        crate::secrets::mask_own_outputs(logs, &report.outputs);
        let sealed =
            self.keys
                .seal_outputs(&release.name, stage, attempt, task, &mut report.outputs);
        match sealed {
            Ok(()) => TaskOutcome::Succeeded {
                warnings: report.warnings,
                outputs: report.outputs,
            },
            Err(e) => TaskOutcome::Failed(format!(
                "the task ran, but its secret outputs could not be stored: {e}"
            )),
        }
    }
}

impl Engine {
    /// Evaluates every gate of the stage's `kind` gates once, concurrently. A gate that cannot
    /// run, or fails, is unhealthy with the reason.
    pub(super) async fn evaluate_gates(
        &self,
        release: &Release,
        stage: &str,
        attempt: u32,
        kind: ApprovalKind,
    ) -> Vec<GateResult> {
        let Some(stage_index) = release.plan.stages.iter().position(|s| s.name == stage) else {
            return Vec::new();
        };
        let gates = super::remote_gates::gates_of(&release.plan.stages[stage_index], kind);
        let workspace = match self.workspace(&release.name, stage, attempt) {
            Ok(workspace) => workspace,
            Err(why) => {
                return gates
                    .iter()
                    .map(|gate| GateResult {
                        gate: gate.name.clone(),
                        healthy: false,
                        reason: Some(why.clone()),
                    })
                    .collect();
            }
        };
        let evaluations = gates.iter().map(|gate| async {
            let health = self
                .evaluate_gate(release, stage_index, attempt, &workspace, gate)
                .await;
            GateResult {
                gate: gate.name.clone(),
                healthy: health.is_ok(),
                reason: health.err(),
            }
        });
        futures_util::future::join_all(evaluations).await
    }

    async fn evaluate_gate(
        &self,
        release: &Release,
        stage_index: usize,
        attempt: u32,
        workspace: &Path,
        gate: &GateSpec,
    ) -> Result<(), String> {
        let scope = Scope::for_task(
            release,
            stage_index,
            attempt,
            &self.data_dir,
            workspace,
            &self.keys,
        )?;
        let plugin = self.release_plugin(release, &gate.plugin)?;
        let config = scope.substitute_json(&gate.config)?;
        let grants = grants(
            &gate.grants,
            &|text| scope.substitute_grant(text),
            None,
            &self.fence,
        )?;
        let input = TaskInput {
            config: config.to_string(),
            context: context(
                release,
                &release.plan.stages[stage_index].name,
                attempt,
                false,
            ),
            variables: scope.variables(),
        };
        let sandbox = Sandbox {
            grants,
            limits: gate.limits,
            mask: scope.secrets(),
            sink: None,
        };
        match self
            .host
            .evaluate_gate(&plugin, sandbox, &input)
            .await
            .result
        {
            Ok(Health::Healthy) => Ok(()),
            Ok(Health::Unhealthy(why)) => Err(why),
            Err(failure) => Err(format!("the gate could not be evaluated: {failure}")),
        }
    }
}

/// What a task or gate is told about where it runs.
pub(super) fn context(release: &Release, stage: &str, attempt: u32, workspace: bool) -> Context {
    Context {
        pipeline: release.pipeline.clone(),
        release: release.name.clone(),
        release_number: release.number,
        stage: stage.to_owned(),
        attempt,
        artifacts: release
            .artifacts
            .iter()
            .map(|a| Artifact {
                alias: a.alias.clone(),
                version: a.version.clone(),
                path: format!("/workspace/{}", a.alias),
            })
            .collect(),
        workspace: workspace.then(|| super::vars::WORKSPACE.to_owned()),
    }
}

/// Builds a sandbox's grants from the pipeline's, resolving `$(...)` with `resolve` (from the
/// plan alone: release-time variables never move a grant).
/// Read-write directories the engine owns (under the data directory) are created when missing.
fn grants(
    spec: &GrantSpec,
    resolve: &dyn Fn(&str) -> Result<String, String>,
    workspace: Option<(&Path, &str)>,
    fence: &Fence,
) -> Result<Grants, String> {
    let mut grants = Grants::none();
    for dir in &spec.dirs {
        let host = resolve(&dir.host)?;
        fence.check(&host)?;
        let guest = resolve(&dir.guest)?;
        if dir.access == Access::ReadWrite && !Path::new(&host).exists() {
            std::fs::create_dir_all(&host)
                .map_err(|e| format!("cannot create granted directory {host}: {e}"))?;
        }
        grants = grants
            .dir(&host, guest, dir.access)
            .map_err(|e| e.to_string())?;
    }
    for name in &spec.env {
        if name == crate::secrets::KEY_ENV {
            return Err(format!(
                "environment variable {name} is the engine's secret key and is never granted: \
                 remove it from the grants"
            ));
        }
        let value = std::env::var(name).map_err(|_| {
            format!("environment variable {name} is granted but not set for the engine")
        })?;
        grants = grants.env(name.clone(), value);
    }
    for host in &spec.hosts {
        grants = grants.host(host.clone()).map_err(|e| e.to_string())?;
    }
    if let Some((dir, guest)) = workspace {
        let access = spec.workspace.unwrap_or(Access::ReadWrite);
        grants = grants.dir(dir, guest, access).map_err(|e| e.to_string())?;
    }
    Ok(grants)
}

/// The sandbox of an artifact source: its grants, plus the destination at `/artifact`.
pub(super) fn source_call(
    plan: &Plan,
    spec: &ArtifactSpec,
    data_dir: &Path,
    fence: &Fence,
    keys: &Keyring,
    destination: Option<&Path>,
) -> Result<(Sandbox, String), String> {
    let data_dir = data_dir.display().to_string();
    let resolve = |text: &str| {
        Ok(text
            .replace("$(sluice.pipeline-dir)", &plan.dir)
            .replace("$(sluice.data-dir)", &data_dir))
    };
    let destination = destination.map(|d| (d, "/artifact"));
    let scope = Scope::for_source(plan, &spec.config, keys)?;
    let config = scope.substitute_json(&spec.config)?.to_string();
    let sandbox = Sandbox {
        grants: grants(&spec.grants, &resolve, destination, fence)?,
        limits: Limits::default(),
        mask: scope.secrets(),
        sink: None,
    };
    Ok((sandbox, config))
}

/// What a source's `fetch` is given for a version: its `pin` (a digest naming exactly the bytes
/// listed when the release was created) if the source recorded one, else its id.
pub(super) fn fetch_as(version: &Version) -> &str {
    version
        .metadata
        .iter()
        .find(|(key, _)| key == "pin")
        .map_or(&version.id, |(_, pin)| pin)
}

/// Version order: numeric parts compared as numbers (`1.10` after `1.9`).
pub(super) fn version_order(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in s.chars() {
            match out.last_mut() {
                Some(last) if last.chars().all(|d| d.is_ascii_digit()) == c.is_ascii_digit() => {
                    last.push(c)
                }
                _ => out.push(c.to_string()),
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}
