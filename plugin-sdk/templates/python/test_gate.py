"""Tests of the plugin's logic, in Python: `python -m pytest` (no component needed)."""

import sluice_plugin as sluice
from app import check, evaluate


def test_healthy_when_the_text_is_there():
    assert check("<h1>Version 1.2</h1>", "Version 1.2") == sluice.Healthy()


def test_unhealthy_says_what_is_missing():
    health = check("<h1>Version 1.1</h1>", "Version 1.2")
    assert isinstance(health, sluice.Unhealthy)
    assert "Version 1.2" in health.reason


def test_reads_the_configured_file(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("Version 2")
    input = sluice.TaskInput.for_test(config={"file": str(page), "contains": "Version 2"})
    assert evaluate(input) == sluice.Healthy()
