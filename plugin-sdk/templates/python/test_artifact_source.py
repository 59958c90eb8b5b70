"""Tests of the plugin's logic, in Python: `python -m pytest` (no component needed)."""

import sluice_plugin as sluice
from app import fetch, list_versions, newest_first


def test_orders_versions_newest_first_numerically():
    assert newest_first(["1.9.0", "1.10.0", "0.2.0"]) == ["1.10.0", "1.9.0", "0.2.0"]


def test_lists_and_fetches(tmp_path):
    (tmp_path / "builds" / "1.0.0").mkdir(parents=True)
    (tmp_path / "builds" / "1.0.0" / "index.html").write_text("one")
    config = sluice.Config({"root": str(tmp_path / "builds")})
    assert [v.id for v in list_versions(config)] == ["1.0.0"]
    fetched = fetch(config, "1.0.0", str(tmp_path / "out"))
    assert (tmp_path / "out" / "index.html").read_text() == "one"
    assert fetched.metadata == {"files": "1"}
