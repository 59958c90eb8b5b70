//! `sluice run`, `resume`, `validate`, `releases`, `logs` and `deploy`: the release engine on the
//! embedded store in a data directory.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Arg, Args, Subcommand};
use sluice::core::{Event, Release, ReleaseState, StageState, TaskState};
use sluice::pipeline;
use sluice::plugin::{HostConfig, PluginHost};
use sluice::registry;
use sluice::scheduler::{CreateOptions, Engine, Observer, Sweep};
use sluice::store::{LogKey, Store};
use sluice::types::{Escaped, LogEvent};

use super::Exit;
use super::approve::{ApproveMode, LocalApprovals};
use super::args::{Driving, ReleaseInputs};
use super::live::Live;
use super::show::{kebab, show};

#[derive(Debug, Args)]
pub(super) struct DataDir {
    /// The data directory (store, workspaces, compiled plugins).
    #[arg(long = "data-dir", env = "SLUICE_DATA_DIR", default_value = ".sluice", value_parser = super::args::absolute_dir)]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    #[command(flatten)]
    inputs: ReleaseInputs,
    #[command(flatten)]
    driving: Driving,
    /// The data directory (default: `.sluice` next to the pipeline).
    #[arg(long = "data-dir", env = "SLUICE_DATA_DIR", value_parser = super::args::absolute_dir)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(mut_args(resume_help))]
pub(super) struct ResumeArgs {
    #[command(flatten)]
    data: DataDir,
    #[command(flatten)]
    driving: Driving,
}

/// `resume` words `--allow-partial` for every release it drives.
fn resume_help(arg: Arg) -> Arg {
    match arg.get_id().as_str() {
        "allow_partial" => arg.help("Exit 0 when a release only partially succeeded"),
        _ => arg,
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum ReleasesCommand {
    /// List the releases in the data directory.
    List(DataDir),
    /// Show one release: artifacts, digests, stages, tasks, approvals.
    Show {
        /// Release name, e.g. `space-game-3`.
        release: String,
        #[command(flatten)]
        data: DataDir,
    },
}

fn user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".into())
}

fn engine(data_dir: &Path) -> anyhow::Result<Arc<Engine>> {
    // A key that is there but unusable stops the command before anything is opened.
    sluice::secrets::Keyring::from_env(data_dir).check()?;
    let store = Store::open(data_dir)?;
    let host = PluginHost::new(HostConfig::in_data_dir(data_dir))?;
    Ok(Arc::new(Engine::new(
        store,
        Arc::new(host),
        data_dir.to_owned(),
    )))
}

/// Prints committed transitions and task log lines as plain lines.
struct Lines;

impl Observer for Lines {
    fn committed(&self, release: &Release, what: &str) {
        println!("[{}] {}", release.name, Escaped(what));
    }

    fn task_event(&self, key: &LogKey<'_>, event: &LogEvent) {
        let (release, stage, task) = (key.release, key.stage, key.task);
        if let LogEvent::Line(line) = event {
            println!(
                "[{release}] {stage}/{task} {}",
                line.to_string().trim_start()
            );
        }
    }
}

/// The live view on a terminal, plain lines otherwise.
fn observer() -> (Arc<dyn Observer>, Option<Arc<Live>>) {
    if std::io::stdout().is_terminal() {
        let live = Arc::new(Live::new());
        (live.clone(), Some(live))
    } else {
        (Arc::new(Lines), None)
    }
}

/// The exit code and closing line for where a release ended up.
fn conclude(release: &Release, allow_partial: bool) -> Exit {
    println!("release {} {}", release.name, describe_state(release));
    for stage in &release.stages {
        let state = stage.state();
        let reason = stage
            .attempts
            .last()
            .and_then(|a| a.reason.clone())
            .map(|r| format!(" — {}", Escaped(&r)))
            .unwrap_or_default();
        println!("  {:<16} {}{reason}", stage.name, kebab(state));
    }
    match release.state {
        ReleaseState::Succeeded => Exit::Success,
        ReleaseState::PartiallySucceeded if allow_partial => Exit::Success,
        _ => Exit::Failed,
    }
}

fn describe_state(release: &Release) -> String {
    match release.state {
        ReleaseState::Active => "is waiting (an approval or a manual stage)".into(),
        ReleaseState::Succeeded => "succeeded".into(),
        ReleaseState::PartiallySucceeded => "partially succeeded".into(),
        ReleaseState::Failed => "failed".into(),
        ReleaseState::Abandoned => "was abandoned".into(),
    }
}

/// `.sluice` next to the pipeline: where `run` and `validate` keep their data without
/// `--data-dir`.
fn default_data_dir(loaded: &pipeline::Loaded) -> PathBuf {
    Path::new(&loaded.plan.dir).join(".sluice")
}

pub(super) fn run(args: RunArgs) -> anyhow::Result<Exit> {
    let mut loaded = pipeline::load(&args.pipeline)?;
    if let Some(stage) = loaded.plan.stages.iter().find(|s| s.pool.is_some()) {
        anyhow::bail!(
            "stage `{}` runs on an agent of pool `{}`, and `sluice run` runs every stage here, \
             with no agents: serve the pipeline (`sluice serve`, the pool under [[pools]] in \
             sluice.toml), or remove `pool` to run the stage locally",
            stage.name,
            stage.pool.as_deref().unwrap_or_default()
        );
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir(&loaded));
    let engine = engine(&data_dir)?;
    pin_plugins(&mut loaded, engine.host())?;
    // The workspaces no deployment needs, and those of this pipeline's failed runs: its
    // stages run again now.
    let swept = engine.sweep_workspaces(Sweep {
        keep: None,
        rerun: Some(&loaded.plan.name),
    });
    for problem in swept.problems {
        eprintln!("sluice: warning: removing old workspaces: {problem}");
    }
    let options = CreateOptions {
        artifacts: args
            .inputs
            .artifacts()?
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        variables: args.inputs.variables()?,
        creator: user(),
        description: args.inputs.description.clone(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let release = runtime.block_on(async {
        let release = engine.create_release(&loaded, options, None).await?;
        let versions: Vec<String> = release
            .artifacts
            .iter()
            .map(|a| format!("{} {}", a.alias, Escaped(&a.version.id)))
            .collect();
        match versions.is_empty() {
            true => println!("release {} created", release.name),
            false => println!("release {} created ({})", release.name, versions.join(", ")),
        }
        let (observer, live) = observer();
        let approvals = LocalApprovals::new(args.driving.approve, live);
        engine.drive(&release.name, approvals, observer).await
    })?;
    Ok(conclude(&release, args.driving.allow_partial))
}

pub(super) fn resume(args: ResumeArgs) -> anyhow::Result<Exit> {
    let engine = engine(&args.data.data_dir)?;
    let unfinished = engine.unfinished()?;
    if unfinished.is_empty() {
        println!(
            "nothing to resume: every release in {} is finished",
            args.data.data_dir.display()
        );
        return Ok(Exit::Success);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let mut exit = Exit::Success;
    for release in unfinished {
        println!("resuming release {}", release.name);
        let (observer, live) = observer();
        let approvals = LocalApprovals::new(args.driving.approve, live);
        let release = runtime.block_on(engine.drive(&release.name, approvals, observer))?;
        if conclude(&release, args.driving.allow_partial) != Exit::Success {
            exit = Exit::Failed;
        }
    }
    Ok(exit)
}

pub(super) fn validate(pipeline_path: &Path, data_dir: Option<PathBuf>) -> anyhow::Result<Exit> {
    let mut loaded = pipeline::load(pipeline_path)?;
    let data_dir = data_dir.unwrap_or_else(|| default_data_dir(&loaded));
    let host = PluginHost::new(HostConfig::in_data_dir(&data_dir))?;
    for pin in pin_plugins(&mut loaded, &host)? {
        if pin.written != pin.pinned {
            println!("plugin {} pinned to {}", pin.written, pin.digest);
        }
    }
    // Worlds first, from the binaries (no compilation); then every plugin compiled (or taken
    // from the cache), which checks its imports.
    pipeline::outline_plugins(&loaded, &host)?;
    let what = format!("the plugins of {}", pipeline_path.display());
    super::spinner::while_compiling(&what, || pipeline::check_plugins(&loaded, &host))?;
    let plan = &loaded.plan;
    let tasks: usize = plan.stages.iter().map(|s| s.tasks.len()).sum();
    println!(
        "{}: pipeline `{}` is valid: {} stages ({}), {} tasks, {} artifacts",
        pipeline_path.display(),
        plan.name,
        plan.stages.len(),
        plan.stages
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(" -> "),
        tasks,
        plan.artifacts.len()
    );
    Ok(Exit::Success)
}

/// Pins the pipeline's `oci://` plugins (any registry: the CLI is run by the pipeline's
/// author), pulling them into the data directory's plugin store.
fn pin_plugins(
    loaded: &mut pipeline::Loaded,
    host: &PluginHost,
) -> Result<Vec<registry::Pin>, pipeline::PipelineError> {
    registry::pin(
        &mut loaded.plan,
        host,
        &registry::Registries::any_from_env(),
    )
}

pub(super) fn releases(command: ReleasesCommand) -> anyhow::Result<Exit> {
    match command {
        ReleasesCommand::List(data) => {
            let store = Store::open(&data.data_dir)?;
            println!("{:<24} {:<20} {:<10} STAGES", "RELEASE", "STATE", "CREATOR");
            for release in store.releases()? {
                let stages: Vec<String> = release
                    .stages
                    .iter()
                    .map(|s| format!("{}={}", s.name, kebab(s.state())))
                    .collect();
                println!(
                    "{:<24} {:<20} {:<10} {}",
                    release.name,
                    kebab(release.state),
                    Escaped(&release.creator),
                    stages.join(" ")
                );
            }
            let quarantined = store.quarantined()?;
            if !quarantined.is_empty() {
                println!(
                    "\nQUARANTINED: {} stored records do not decode; their bytes are kept in the quarantine table, every other release goes on",
                    quarantined.len()
                );
                println!("{:<24} {:<10} REASON", "RELEASE", "BYTES");
                for q in quarantined {
                    println!(
                        "{:<24} {:<10} {}",
                        Escaped(&q.key),
                        q.bytes,
                        Escaped(&q.reason)
                    );
                }
            }
            Ok(Exit::Success)
        }
        ReleasesCommand::Show { release, data } => {
            let store = Store::open(&data.data_dir)?;
            let Some(found) = store.release(&release)? else {
                if let Some(q) = store.quarantined_one(&release)? {
                    bail!(
                        "release `{}` in {} is quarantined: its stored record does not decode ({}); its bytes are kept in the quarantine table",
                        Escaped(&q.key),
                        data.data_dir.display(),
                        Escaped(&q.reason)
                    );
                }
                bail!(
                    "there is no release `{release}` in {}",
                    data.data_dir.display()
                );
            };
            show(&found);
            Ok(Exit::Success)
        }
    }
}

pub(super) fn logs(
    release: &str,
    stage: Option<&str>,
    task: Option<&str>,
    data: &DataDir,
) -> anyhow::Result<Exit> {
    let store = Store::open(&data.data_dir)?;
    let found = store.release(release)?.with_context(|| {
        format!(
            "there is no release `{release}` in {}",
            data.data_dir.display()
        )
    })?;
    if let Some(stage) = stage
        && found.stage(stage).is_none()
    {
        let names: Vec<&str> = found.stages.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "release {release} has no stage `{stage}` (stages: {})",
            names.join(", ")
        );
    }
    let mut shown = 0;
    for run in found
        .stages
        .iter()
        .filter(|s| stage.is_none_or(|n| n == s.name))
    {
        for attempt in &run.attempts {
            for t in attempt
                .tasks
                .iter()
                .filter(|t| task.is_none_or(|n| n == t.name))
            {
                if t.state == TaskState::Pending {
                    continue;
                }
                let key = LogKey {
                    release,
                    stage: &run.name,
                    attempt: attempt.number,
                    task: &t.name,
                };
                println!(
                    "== {} / attempt {} / {} ({})",
                    run.name,
                    attempt.number,
                    t.name,
                    kebab(t.state)
                );
                for line in store.log(&key)?.unwrap_or_default() {
                    println!("{line}");
                }
                shown += 1;
            }
        }
    }
    if shown == 0 {
        bail!(
            "no task logs match (release {release}{})",
            task.map(|t| format!(", task {t}")).unwrap_or_default()
        );
    }
    Ok(Exit::Success)
}

/// `sluice deploy`: in the graph's order, or out of it with a justification (`out_of_order`).
pub(super) fn deploy(
    release: &str,
    stage: &str,
    approve: ApproveMode,
    out_of_order: Option<String>,
    data: &DataDir,
) -> anyhow::Result<Exit> {
    let engine = engine(&data.data_dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let event = match out_of_order {
        Some(justification) => Event::DeployOutOfOrder {
            stage: stage.into(),
            at: None,
            by: user(),
            justification,
        },
        None => Event::Deploy {
            stage: stage.into(),
        },
    };
    let (observer, live) = observer();
    let approvals = LocalApprovals::new(approve, live);
    let release =
        runtime.block_on(engine.drive_after(release, event, &user(), approvals, observer))?;
    let state = release.stage(stage).map(|s| s.state());
    conclude(&release, false);
    Ok(
        if matches!(
            state,
            Some(StageState::Succeeded | StageState::PartiallySucceeded)
        ) {
            Exit::Success
        } else {
            Exit::Failed
        },
    )
}
