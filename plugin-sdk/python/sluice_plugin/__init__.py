"""Helpers for writing Sluice plugins in Python, built with componentize-py.

A plugin module defines one function and exports it with the matching decorator::

    import sluice_plugin as sluice

    @sluice.task
    def run(input: sluice.TaskInput) -> sluice.Report:
        name = input.config.string("name")
        sluice.log.info(f"greeting {name}")
        return sluice.Report().output("greeting", f"Hello, {name}!")

    Task = run  # componentize-py looks for the class `Task` in the module it builds

The decorated function stays callable, so a pytest test calls it with a
`TaskInput.for_test(...)`. Any exception the function does not catch becomes the task's failure,
with the exception's type, text and the line of the plugin's own code it came from; `Failed`
and `InvalidConfig` carry a message of your own, and `sys.exit(n)` reads "plugin exited with
status n". Nothing here widens what the pipeline grants: files, environment variables and hosts
the task was not given are refused by the host.
"""

from . import env, files, http, log
from .config import Config
from .errors import Failed, InvalidConfig
from .export import artifact_source, gate, task
from .model import (
    Artifact,
    Context,
    Healthy,
    Report,
    TaskInput,
    Unhealthy,
    Variables,
    Version,
)

__all__ = [
    "Artifact",
    "Config",
    "Context",
    "Failed",
    "Healthy",
    "InvalidConfig",
    "Report",
    "TaskInput",
    "Unhealthy",
    "Variables",
    "Version",
    "artifact_source",
    "env",
    "files",
    "gate",
    "http",
    "log",
    "task",
]
