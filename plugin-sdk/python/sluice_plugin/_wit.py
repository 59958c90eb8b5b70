"""The generated bindings, imported when this package is first imported. componentize-py
snapshots the interpreter right after importing the app: a module first imported later, inside
a call, is not in the component. Under pytest there are no bindings: `IN_COMPONENT` is False
and the helpers fall back to what a test can use."""

import importlib


def _module(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


cpt = _module("componentize_py_types")
log = _module("wit_world.imports.log")
types = _module("wit_world.imports.sluice_plugin_types")
environment = _module("wit_world.imports.environment")
outgoing_handler = _module("wit_world.imports.outgoing_handler")
http_types = _module("wit_world.imports.wasi_http_types")
streams = _module("wit_world.imports.streams")
task = _module("wit_world.exports.task")
gate = _module("wit_world.exports.gate")

IN_COMPONENT = cpt is not None and types is not None
