"""The task's log: structured lines through the host (stdout and stderr work too, as `info` and
`warn`). Outside a component (under pytest) lines go to stderr."""

import sys

from . import _wit

_LEVELS = ("trace", "debug", "info", "warn", "error")


def write(level: str, message: str, **fields: object) -> None:
    """One log line at `level` (trace, debug, info, warn, error), with key/value fields."""
    if level not in _LEVELS:
        raise ValueError(f"unknown log level {level!r} (expected one of {', '.join(_LEVELS)})")
    pairs = [(k, str(v)) for k, v in fields.items()]
    wit = _wit.log
    if wit is None:
        shown = " ".join(f"{k}={v}" for k, v in pairs)
        print(f"{level.upper()} {message} {shown}".rstrip(), file=sys.stderr)
        return
    wit.log(getattr(wit.Level, level.upper()), message, pairs)


def trace(message: str, **fields: object) -> None:
    write("trace", message, **fields)


def debug(message: str, **fields: object) -> None:
    write("debug", message, **fields)


def info(message: str, **fields: object) -> None:
    write("info", message, **fields)


def warn(message: str, **fields: object) -> None:
    write("warn", message, **fields)


def error(message: str, **fields: object) -> None:
    write("error", message, **fields)


def progress(percent: int, message: str) -> None:
    """Reports progress: `percent` from 0 to 100 and what is happening."""
    wit = _wit.log
    if wit is None:
        print(f"PROGRESS {percent}% {message}", file=sys.stderr)
        return
    wit.progress(max(0, min(100, int(percent))), message)
