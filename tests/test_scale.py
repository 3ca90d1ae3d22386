"""Many clients for real (slow): 100 clients on Flower's simulation engine on Ray, every
one releasing, measuring its own privacy and being scored; and 100 clients in online
rounds with sampled participation, dropout and stragglers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedsim.config import load_scenario
from fedsim.simulation import run_scenario
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_100_clients_release_and_are_scored(tmp_path):
    scenario = load_scenario(REPO / "scenarios/federated_1000_clients.toml", ["federation.num_clients=100"])
    run_dir = run_scenario(scenario, tmp_path / "runs")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["num_clients"] == 100 and results["num_failed"] == 0
    assert [c["id"] for c in results["clients"]] == list(range(100))
    assert sum(c["n_train"] for c in results["clients"]) == 5000  # the whole training split, once
    (release,) = results["releases"]
    assert len(release["clients"]) == 100 and all(c["n_released"] > 0 for c in release["clients"])
    assert release["accuracy_n"] == 1000 and 0.7 < release["accuracy"]["knn"] <= 1
    assert np.isfinite(release["privacy"]["reidentification_rate"])
    assert results["timings"]["simulation_s"] > 0 and (run_dir / "report.html").is_file()


def test_100_clients_online_with_sampled_participation(tmp_path):
    scenario = load_scenario(REPO / "scenarios/federated_sampling.toml", ["online.rounds=4"])
    run_dir = run_scenario(scenario, tmp_path / "runs")
    results = json.loads((run_dir / "results.json").read_text())
    reference, online = results["online"]  # the `none` reference, then gaussian
    rounds = online["participation"]
    assert reference["participation"] == rounds  # the same clients in the same rounds
    assert len(rounds) == 4 and all(len(r["sampled"]) == 20 for r in rounds)
    assert sum(len(r["dropped"]) for r in rounds) > 0 and sum(len(r["late"]) for r in rounds) > 0
    assert all(len(r["took_part"]) >= 10 for r in rounds)
    R = np.asarray(online["classifiers"]["knn"]["R"], dtype=float)
    assert np.isfinite(R).all() and R[-1, -1] > 0.5
