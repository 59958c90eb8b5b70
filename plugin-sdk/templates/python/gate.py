"""{{name}}: a Sluice gate. Healthy when a file in a granted directory contains a text, e.g. the
version a deployment should have published."""

import sluice_plugin as sluice


def check(text: str, expected: str):
    """The plugin's logic, kept free of I/O so that test_app.py can check it."""
    if expected in text:
        return sluice.Healthy()
    return sluice.Unhealthy(f"the file does not contain {expected!r} yet")


def evaluate(input: sluice.TaskInput):
    config = input.config
    config.reject_unknown("file", "contains")
    file = config.string("file")
    return check(sluice.files.read_text(file), config.string("contains"))


# componentize-py calls the class `Gate` of this module.
Gate = sluice.gate(evaluate)
