"""The two failures a plugin reports itself, and how any other exception is described."""

import os
import traceback


class PluginError(Exception):
    """Base of the failures a plugin reports itself."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Failed(PluginError):
    """The plugin tried and failed: say what failed and why, in words the pipeline's owner can
    act on."""


class InvalidConfig(PluginError):
    """The configuration the pipeline gave the plugin is wrong: say which field and how to fix
    it."""


_SDK_DIR = os.path.dirname(os.path.abspath(__file__))


def describe(error: BaseException) -> str:
    """The exception's type and text, and the innermost frame of the plugin's own code (not
    this library's, not the standard library's): `ValueError: bad port (at app.py:12, in run)`.
    """
    if isinstance(error, SystemExit):
        code = error.code
        if code is None:
            code = 0
        if isinstance(code, int):
            return f"plugin exited with status {code}"
        return f"plugin exited: {code}"
    text = str(error)
    kind = type(error).__name__
    shown = f"{kind}: {text}" if text else kind
    frame = _own_frame(error)
    if frame is not None:
        shown += f" (at {os.path.basename(frame.filename)}:{frame.lineno}, in {frame.name})"
    return shown


def _own_frame(error: BaseException):
    """The innermost traceback frame outside this package and the standard library."""
    stdlib = os.path.dirname(os.__file__)
    own = None
    for frame in traceback.extract_tb(error.__traceback__):
        path = os.path.abspath(frame.filename)
        if path.startswith(_SDK_DIR) or path.startswith(stdlib):
            continue
        own = frame
    return own
