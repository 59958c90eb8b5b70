"""The task's configuration: the table the pipeline wrote under the task, with errors that name
the field."""

import json
from typing import Any, Dict, List, Optional

from .errors import InvalidConfig

_MISSING = object()


class Config:
    """Typed access to the configuration table. Every accessor raises `InvalidConfig` naming the
    field when it is missing (and no default is given) or has the wrong type; `reject_unknown`
    turns a typo in the pipeline into an error instead of a silently ignored key."""

    def __init__(self, table: Dict[str, Any], prefix: str = ""):
        if not isinstance(table, dict):
            raise InvalidConfig(f"{prefix or 'the configuration'} must be a table")
        self._table = table
        self._prefix = prefix

    @classmethod
    def from_json(cls, text: str) -> "Config":
        """The configuration as the host hands it: JSON text (`null` when the task has none)."""
        value = json.loads(text) if text else None
        return cls(value if value is not None else {})

    def as_dict(self) -> Dict[str, Any]:
        """The whole table, as parsed."""
        return dict(self._table)

    def has(self, key: str) -> bool:
        return key in self._table

    def string(self, key: str, default: Any = _MISSING) -> str:
        return self._typed(key, str, "a string", default)

    def integer(self, key: str, default: Any = _MISSING) -> int:
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, "an integer", value)
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        return self._typed(key, bool, "true or false", default)

    def strings(self, key: str, default: Any = _MISSING) -> List[str]:
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, "a list of strings", value)
        return value

    def table(self, key: str, default: Any = _MISSING) -> "Config":
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value if isinstance(value, Config) else Config(value or {}, self._name(key))
        if not isinstance(value, dict):
            raise self._wrong(key, "a table", value)
        return Config(value, self._name(key))

    def reject_unknown(self, *known: str) -> None:
        """Raises `InvalidConfig` for the first key not in `known`."""
        for key in self._table:
            if key not in known:
                expected = ", ".join(f"`{k}`" for k in known) or "none"
                raise InvalidConfig(f"unknown field `{self._name(key)}` (expected: {expected})")

    def _name(self, key: str) -> str:
        return f"{self._prefix}.{key}" if self._prefix else key

    def _get(self, key: str, default: Any) -> Any:
        if key in self._table:
            return self._table[key]
        if default is _MISSING:
            raise InvalidConfig(f"missing field `{self._name(key)}`")
        return default

    def _typed(self, key: str, kind: type, shown: str, default: Any) -> Any:
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, kind):
            raise self._wrong(key, shown, value)
        return value

    def _wrong(self, key: str, expected: str, value: Any) -> InvalidConfig:
        return InvalidConfig(
            f"field `{self._name(key)}` must be {expected}, not {_kind(value)} ({json.dumps(value)})"
        )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "null"
