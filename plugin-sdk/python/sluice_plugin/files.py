"""Files in the directories the pipeline grants (`grants.dirs`, seen at their guest paths such
as `/workspace` or `/site`). Python's own `open` and `os` work on those paths too; these
helpers add errors that say which grant is missing."""

import errno
import os

from .errors import Failed


# What a path outside every grant fails with (WASI adds ENOTCAPABLE).
_NOT_GRANTED = {errno.ENOENT, errno.EACCES, errno.EPERM, getattr(errno, "ENOTCAPABLE", errno.EPERM)}


def read_text(path: str) -> str:
    """The text of the file at the guest path `path`."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise Failed(_explain("read", path, e)) from None


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Failed(_explain("read", path, e)) from None


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path`, creating its parent directories."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> None:
    try:
        parent = os.path.dirname(path)
        # Not makedirs on a grant's own root: `/` above it is no directory inside a component.
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise Failed(_explain("write", path, e)) from None


def _explain(verb: str, path: str, error: OSError) -> str:
    reason = error.strerror or str(error)
    hint = ""
    if error.errno in _NOT_GRANTED:
        hint = (
            " (is it inside a directory granted to the task, at its guest path? "
            'grants.dirs = [{ host = "...", guest = "/dir", access = "rw" }] for writes)'
        )
    return f"cannot {verb} {path}: {reason}{hint}"
