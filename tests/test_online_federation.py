"""End to end: online rounds as real Flower rounds on Ray (iid and domain shift, replay)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedsim.config import load_scenario
from fedsim.simulation import run_scenario
from tests.conftest import REPO


def _run(tmp_path: Path, name: str, *overrides: str) -> tuple[dict, Path]:
    scenario = load_scenario(REPO / "scenarios" / name, ["federation.num_clients=2", "online.rounds=4",
                                                           "online.batch_size=40", "privacy.metrics=false",
                                                           "classifiers.fc.epochs=5", *overrides])
    run_dir = run_scenario(scenario, tmp_path / "runs")
    return json.loads((run_dir / "results.json").read_text()), run_dir


@pytest.fixture(scope="module")
def shift_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("shift"), "online_domain_shift.toml")


def test_domain_shift_with_replay_fills_R_and_every_metric(shift_run):
    results, run_dir = shift_run
    assert results["num_failed"] == 0
    (entry,) = results["online"]
    assert entry["setting"] == "domain_shift" and entry["rounds"] == 4 and entry["replay"]
    assert entry["domains"][0] == "clean" and len(set(entry["domains"])) == 4
    names = {"knn", "ncm", "knn_ncm", "fc"}
    assert set(entry["classifiers"]) == names | {n + "+replay" for n in names}
    for name, res in entry["classifiers"].items():
        R = np.asarray(res["R"])
        assert R.shape == (4, 4) and np.isfinite(R).all() and ((0 <= R) & (R <= 1)).all()
        np.testing.assert_allclose(res["accuracy_per_round"], np.diag(R))
        for key in ("average_accuracy", "mean_round_accuracy", "average_forgetting", "backward_transfer",
                    "positive_backward_transfer", "forward_transfer", "avg_training_time_s", "avg_inference_time_s"):
            assert np.isfinite(res["metrics"][key]), (name, key)
        assert res["metrics"]["average_accuracy"] == pytest.approx(R[-1].mean())
        assert res["metrics"]["average_accuracy"] > 0.3  # well above chance (0.1)
    assert set(entry["replay_effect"]) == names
    for pid in ("0", "1"):
        assert np.asarray(entry["clients"][pid]["knn"]["R"]).shape == (4, 4)
    # corrupted test domains are harder than the clean one for the final kNN
    R = np.asarray(entry["classifiers"]["knn"]["R"])
    assert R[-1, 0] > R[-1, 1:].mean()
    assert (run_dir / "online_R-none.png").stat().st_size > 10_000
    assert (run_dir / "online_accuracy-none.png").stat().st_size > 10_000


def test_iid_learners_accumulate_knowledge_across_rounds(tmp_path):
    results, _ = _run(tmp_path, "online_iid.toml", "online.rounds=5", "online.batch_size=20")
    (entry,) = results["online"]
    fc = entry["classifiers"]["fc"]["accuracy_per_round"]
    # 5 rounds x 2 clients x 20 records: the final model knows all 200, not one round's 40
    assert fc[-1] > fc[0], fc
    # kNN on 40 records and NCM's class means from 4 records per class are already at their
    # limit on the shipped embedding (0.92 / 0.90 after round 1): accumulating must not lose it
    for name in ("knn", "ncm"):
        acc = entry["classifiers"][name]["accuracy_per_round"]
        assert min(acc) >= acc[0] - 0.01, (name, acc)
    knn, ncm, both = (entry["classifiers"][n]["metrics"]["average_accuracy"] for n in ("knn", "ncm", "knn_ncm"))
    assert both >= min(knn, ncm) - 1e-9
    assert entry["classifiers"]["knn"]["metrics"]["forward_transfer"] > 0.3  # iid: earlier rounds help
