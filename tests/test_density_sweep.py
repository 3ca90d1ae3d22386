"""scripts/density_sweep.py: the figures REPRODUCTION.md's density_based table is made of."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "density_sweep.py"


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("density_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blobs(rng, centres, labels, n=200, scale=0.3):
    X = np.concatenate([c + scale * rng.standard_normal((n, len(c))) for c in centres]).astype(np.float32)
    return X, np.repeat(labels, n)


def test_pure_clusters_keep_their_labels(sweep):
    rng = np.random.default_rng(0)
    centres = 10 * np.eye(3, 8)
    X, y = blobs(rng, centres, [0, 1, 2])
    Q, yq = blobs(rng, centres, [0, 1, 2], n=50)
    row = sweep.measure({"radius_quantile": 0.5, "min_samples": 3, "noise_scale": 0.0}, X, y, Q, yq, seed=0)
    assert row["other_label"] == 0.0 and row["knn"] == 1.0
    assert 0.3 < row["dropped"] < 0.7  # the quantile: about half the records are core points
    assert row["largest_cluster"] <= 1 / 3 + 1e-9


def test_a_cluster_mixing_two_classes_is_counted(sweep):
    rng = np.random.default_rng(1)
    X, _ = blobs(rng, [np.zeros(8)], [0], n=400)
    y = np.arange(400) % 4 == 0  # one blob, one label in four differs from the majority
    Q, yq = X[:20], np.zeros(20, dtype=np.int64)
    row = sweep.measure({"max_dist": 50.0, "min_samples": 3, "noise_scale": 0.0}, X, y.astype(np.int64), Q, yq, 0)
    assert row["dropped"] == 0.0 and row["largest_cluster"] == 1.0
    assert row["other_label"] == pytest.approx(0.25)
