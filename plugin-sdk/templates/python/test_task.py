"""Tests of the plugin's logic, in Python: `python -m pytest` (no component needed)."""

import pytest

import sluice_plugin as sluice
from app import greeting, run


def test_greets_by_name_release_and_stage():
    context = sluice.Context(release="web-7", stage="prod")
    assert greeting("Ada", context) == "Hello, Ada! (web-7 on prod)\n"


def test_writes_the_file_and_hands_its_path_on(tmp_path):
    file = tmp_path / "greeting.txt"
    report = run(sluice.TaskInput.for_test(config={"name": "Ada", "file": str(file)}))
    assert file.read_text().startswith("Hello, Ada!")
    assert report.output_value("greeting-file") == str(file)


def test_a_missing_field_is_named():
    with pytest.raises(sluice.InvalidConfig, match="missing field `file`"):
        run(sluice.TaskInput.for_test(config={"name": "Ada"}))
