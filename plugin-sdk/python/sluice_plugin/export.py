"""The classes componentize-py calls (`Task`, `Gate`, `ArtifactSource`), made from plain
functions: they convert the generated WIT types to `model`'s and back, and turn every exception
the function does not catch into the plugin's own failure, described in words."""

from typing import Callable, List

from . import _wit
from .config import Config
from .errors import InvalidConfig, PluginError, describe
from .model import Artifact, Context, Healthy, Report, TaskInput, Unhealthy, Variables, Version


def task(run: Callable[[TaskInput], Report]) -> type:
    """The `Task` class for a module whose task is `run(input) -> Report` (or None)."""

    class Task:
        def run(self, input):
            wit = _wit.task
            report = _guarded(
                lambda: run(_input(input.config, input.context, input.variables)) or Report()
            )
            if not isinstance(report, Report):
                _fail(f"the task returned {type(report).__name__}, not a sluice_plugin.Report")
            return wit.Report(
                warnings=list(report.warnings),
                outputs=[wit.OutputVariable(n, v, s) for n, v, s in report.outputs],
            )

    return Task


def gate(evaluate: Callable[[TaskInput], object]) -> type:
    """The `Gate` class for a module whose gate is `evaluate(input) -> Healthy | Unhealthy`."""

    class Gate:
        def evaluate(self, config, context, variables):
            wit = _wit.gate
            health = _guarded(lambda: evaluate(_input(config, context, variables)))
            if isinstance(health, Healthy):
                return wit.Health_Healthy()
            if isinstance(health, Unhealthy):
                return wit.Health_Unhealthy(str(health.reason))
            _fail(
                f"the gate returned {type(health).__name__}, not sluice_plugin.Healthy() "
                "or sluice_plugin.Unhealthy(reason)"
            )

    return Gate


def artifact_source(
    list_versions: Callable[[Config], List[Version]],
    fetch: Callable[[Config, str, str], Version],
) -> type:
    """The `ArtifactSource` class for `list_versions(config) -> [Version]` and
    `fetch(config, version_id, destination) -> Version` (destination is a guest path)."""

    class ArtifactSource:
        def list_versions(self, config):
            versions = _guarded(lambda: list_versions(Config.from_json(config)))
            return [_version_to_wit(v) for v in versions]

        def fetch(self, config, version, destination):
            fetched = _guarded(lambda: fetch(Config.from_json(config), version, destination))
            return _version_to_wit(fetched)

    return ArtifactSource


def _guarded(call):
    """`call()`, with any exception (and `sys.exit`) turned into the WIT error result."""
    Err, types = _wit.cpt.Err, _wit.types
    try:
        return call()
    except Err:
        raise
    except InvalidConfig as e:
        raise Err(types.Error_InvalidConfig(e.message))
    except PluginError as e:
        raise Err(types.Error_Failed(e.message))
    except BaseException as e:  # noqa: BLE001 - every failure is the plugin's own, in words
        raise Err(types.Error_Failed(describe(e)))


def _fail(message: str):
    raise _wit.cpt.Err(_wit.types.Error_Failed(message))


def _input(config: str, c, variables) -> TaskInput:
    context = Context(
        pipeline=c.pipeline,
        release=c.release,
        release_number=c.release_number,
        stage=c.stage,
        attempt=c.attempt,
        artifacts=[Artifact(a.alias, _version(a.version), a.path) for a in c.artifacts],
        workspace=c.workspace,
    )
    variables = Variables([(v.name, v.value, v.secret) for v in variables])
    return TaskInput(Config.from_json(config), context, variables)


def _version(v) -> Version:
    return Version(v.id, v.created, v.branch, list(v.tags), v.commit, dict(v.metadata))


def _version_to_wit(v):
    if not isinstance(v, Version):
        _fail(f"the artifact source returned {type(v).__name__}, not a sluice_plugin.Version")
    return _wit.types.VersionInfo(
        id=v.id,
        created=v.created,
        branch=v.branch,
        tags=list(v.tags),
        commit=v.commit,
        metadata=list(v.metadata.items()),
    )
