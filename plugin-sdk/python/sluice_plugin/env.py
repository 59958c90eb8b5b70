"""Environment variables the pipeline grants the task (`grants.env`). The host hands a
component only those; `os.environ` inside a componentize-py component is the build's, not the
task's, so read them here."""

from typing import Dict, Optional

from . import _wit
from .errors import Failed


def all() -> Dict[str, str]:  # noqa: A001 - env.all() reads as what it is
    """Every variable granted to the task."""
    if _wit.environment is None:
        import os

        return dict(os.environ)
    return dict(_wit.environment.get_environment())


def get(name: str, default: Optional[str] = None) -> Optional[str]:
    """The value of `name`, or `default` when the task was not granted it or it is unset."""
    return all().get(name, default)


def require(name: str) -> str:
    """The value of `name`; fails the task, naming the grant to add, when it is not there."""
    value = get(name)
    if value is None:
        raise Failed(
            f"the environment variable `{name}` is not set for this task "
            f'(grant it in the pipeline: grants.env = ["{name}"], and set it where the engine runs)'
        )
    return value
