"""Run folders appear only when complete; results.json is valid JSON."""

from __future__ import annotations

import json
import logging

import pytest

from fedsim.report import RunFolder, format_summary, write_json


def test_successful_run_is_renamed_with_log_and_scenario(tmp_path):
    with RunFolder(tmp_path, "demo", {"name": "demo", "seed": 1}) as folder:
        logging.getLogger("fedsim.test").info("hello from the run")
        write_json(folder.path / "results.json", {"accuracy": {"knn": float("nan")}})
        assert folder.path.name.startswith(".")
    final = folder.final_path
    assert final.parent == tmp_path and final.name.endswith("-demo")
    assert [p.name for p in tmp_path.iterdir()] == [final.name]  # no temp folder left
    assert json.loads((final / "results.json").read_text()) == {"accuracy": {"knn": None}}
    assert "hello from the run" in (final / "log.txt").read_text()
    assert 'name = "demo"' in (final / "scenario.toml").read_text()


def test_failed_run_keeps_its_log_but_no_results(tmp_path):
    with pytest.raises(RuntimeError):
        with RunFolder(tmp_path, "demo", {"name": "demo"}):
            raise RuntimeError("client exploded")
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("-demo-failed")
    assert not (folder / "results.json").exists()
    assert "client exploded" in (folder / "log.txt").read_text()


def test_two_runs_in_the_same_second_do_not_collide(tmp_path):
    names = set()
    for _ in range(2):
        with RunFolder(tmp_path, "x", {}) as folder:
            pass
        names.add(folder.final_path.name)
    assert len(names) == 2


def test_summary_lists_clients_and_failures():
    results = {
        "accuracy": {"knn": 0.5},
        "clients": [
            {"id": 1, "status": "ok", "n_train": 10, "n_query": 4, "accuracy": {"knn": 0.25}},
            {"id": 0, "status": "ok", "n_train": 10, "n_query": 4, "accuracy": {"knn": 0.75}},
            {"id": None, "status": "failed", "error": "ValueError: bad\ntraceback"},
        ],
    }
    text = format_summary(results)
    lines = text.splitlines()
    assert lines[2].split()[0] == "0" and lines[3].split()[0] == "1"
    assert "FAILED: ValueError: bad" in text and "traceback" not in text
    assert lines[-1].split() == ["global", "20", "8", "0.5000"]
