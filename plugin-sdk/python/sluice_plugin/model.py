"""What a plugin is given and what it returns, as plain Python objects (the same shapes as the
WIT types in `wit/types.wit`, and free of generated code, so a plugin's logic runs under pytest).
"""

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .config import Config


@dataclass
class Version:
    """One version of an artifact, as an artifact source lists it."""

    id: str
    created: Optional[int] = None
    """Seconds since the Unix epoch (UTC), if known."""
    branch: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    commit: Optional[str] = None
    metadata: Dict[str, str] = field(default_factory=dict)


@dataclass
class Artifact:
    """An artifact of the release, already in the deployment's workspace."""

    alias: str
    version: Version
    path: str
    """Guest path of the directory holding the artifact's files."""


@dataclass
class Context:
    """Where in a release the plugin is being called."""

    pipeline: str = "example"
    release: str = "example-1"
    release_number: int = 1
    stage: str = "dev"
    attempt: int = 1
    artifacts: List[Artifact] = field(default_factory=list)
    workspace: Optional[str] = None
    """Guest path of the deployment's workspace (`/workspace`), if the task was granted it."""


class Variables:
    """The variables in scope: pipeline, stage and release-time variables, and outputs of earlier
    tasks and stages. Secret values are clear here: use them, never log or return them."""

    def __init__(self, variables: List[Tuple[str, str, bool]] = ()):
        self._values = {name: (value, secret) for name, value, secret in variables}

    @classmethod
    def of(cls, values: Dict[str, str], secrets: Dict[str, str] = None) -> "Variables":
        """Variables for a test: plain values and secret ones."""
        plain = [(k, v, False) for k, v in values.items()]
        hidden = [(k, v, True) for k, v in (secrets or {}).items()]
        return cls(plain + hidden)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        found = self._values.get(name)
        return found[0] if found is not None else default

    def __getitem__(self, name: str) -> str:
        found = self._values.get(name)
        if found is None:
            from .errors import InvalidConfig

            raise InvalidConfig(f"the variable `{name}` is not set for this stage")
        return found[0]

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def is_secret(self, name: str) -> bool:
        found = self._values.get(name)
        return found is not None and found[1]


@dataclass
class TaskInput:
    """Everything a task or gate is given."""

    config: Config
    context: Context
    variables: Variables

    @classmethod
    def for_test(
        cls,
        config: Dict[str, Any] = None,
        variables: Dict[str, str] = None,
        secrets: Dict[str, str] = None,
        **context: Any,
    ) -> "TaskInput":
        """An input for a test of the plugin's logic: `config` as the pipeline would write it,
        and any `Context` field by name (`stage="prod"`)."""
        return cls(
            config=Config(json.loads(json.dumps(config or {}))),
            context=Context(**context),
            variables=Variables.of(variables or {}, secrets),
        )


class Report:
    """What a successful task reports: warnings (the task "succeeded with issues") and output
    variables for later tasks and stages."""

    def __init__(self):
        self.warnings: List[str] = []
        self.outputs: List[Tuple[str, str, bool]] = []

    def warn(self, warning: str) -> "Report":
        self.warnings.append(warning)
        return self

    def output(self, name: str, value: str) -> "Report":
        self.outputs.append((name, str(value), False))
        return self

    def secret_output(self, name: str, value: str) -> "Report":
        """An output the engine stores sealed and masks in every log."""
        self.outputs.append((name, str(value), True))
        return self

    def output_value(self, name: str) -> Optional[str]:
        """The value of the output `name`, for tests."""
        for output, value, _ in self.outputs:
            if output == name:
                return value
        return None


@dataclass
class Healthy:
    """A gate's answer: the condition holds."""


@dataclass
class Unhealthy:
    """A gate's answer: the condition does not hold (yet), and why."""

    reason: str
