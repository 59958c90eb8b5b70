"""{{name}}: a Sluice deployment task. It writes a greeting into a file in a granted directory
and hands the file's path and the greeting to later tasks and stages."""

import sluice_plugin as sluice


def greeting(name: str, context: sluice.Context) -> str:
    """The plugin's logic, kept free of I/O so that test_app.py can check it."""
    return f"Hello, {name}! ({context.release} on {context.stage})\n"


def run(input: sluice.TaskInput) -> sluice.Report:
    config = input.config
    config.reject_unknown("name", "file")
    name = config.string("name")
    file = config.string("file")  # a guest path inside a read-write grant, e.g. /out/greeting.txt

    text = greeting(name, input.context)
    sluice.log.info(f"writing greeting to {file}", stage=input.context.stage)
    sluice.files.write_text(file, text)
    return sluice.Report().output("greeting-file", file).output("greeting", text.strip())


# componentize-py calls the class `Task` of this module.
Task = sluice.task(run)
