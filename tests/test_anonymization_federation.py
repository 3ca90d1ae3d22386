"""Every anonymizer inside a real 4-client Flower simulation; the server never sees originals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from fedsim.clients.release import client_data
from fedsim.config import load_scenario
from fedsim.report.summary import PRIVACY_KEYS

SCENARIO = """
name = "allmethods"
seed = 7
[federation]
num_clients = 4
[privacy]
max_samples = 500
[audit]
save_received = true
[anonymizers.none]
[anonymizers.permutation]
[anonymizers.random]
noise_scale = 0.5
[anonymizers.laplace]
noise_scale = 0.3
[anonymizers.gaussian]
noise_scale = [0.5, 8.0]
[anonymizers.pca]
n_components = 16
[anonymizers.density_based]
max_dist = 14.0
min_samples = 3
noise_scale = 0.5
[anonymizers.kmeans]
n_clusters = 100
assign_labels = "majority"
[anonymizers.gan]
n_epochs = 3
[anonymizers.dp_gaussian]
epsilon = 4.0
delta = 1e-5
[anonymizers.random_projection]
n_components = 64
[anonymizers.mdav]
k = 5
"""


def test_every_method_runs_and_server_never_receives_originals(tmp_path):
    path = tmp_path / "all.toml"
    path.write_text(SCENARIO)
    proc = subprocess.run([sys.executable, "-m", "fedsim", "run", str(path), "--output-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1].split("results: ")[1]).parent
    results = json.loads((run_dir / "results.json").read_text())
    labels = [r["label"] for r in results["releases"]]
    assert len(labels) == 13 and labels[0] == "none"
    for rel in results["releases"]:
        assert len(rel["clients"]) == 4 and not rel["failed"], rel["label"]
        for c in rel["clients"]:
            for key in PRIVACY_KEYS[:9] + ("local_accuracy_anonymized", "local_accuracy_loss"):
                assert key in c["metrics"], (rel["label"], key)
        assert 0 <= rel["accuracy"]["knn"] <= 1
    by = {r["label"]: r for r in results["releases"]}
    assert by["none"]["privacy"]["reidentification_rate"] > 0.95
    assert by["permutation"]["privacy"]["reidentification_rate"] > 0.9  # keyed, but reversible
    assert abs(by["permutation"]["accuracy"]["knn"] - by["none"]["accuracy"]["knn"]) < 1e-9  # same key everywhere
    assert by["gaussian(noise_scale=8.0)"]["privacy"]["reidentification_rate"] < 0.2
    assert "epsilon" in by["dp_gaussian(epsilon=4.0, delta=1e-05)"]["privacy"]
    assert (run_dir / "results.csv").is_file()
    assert (run_dir / "tradeoff_accuracy_vs_reidentification.png").is_file()

    # what the server received (training releases only: queries are scored on the clients)
    sc = load_scenario(run_dir / "scenario.toml")
    train = np.concatenate([client_data(sc, pid, 4, progress=False).x_train for pid in range(4)])
    scale = np.median(np.linalg.norm(train, axis=1))
    folders = {f.name: f for f in (run_dir / "received").iterdir()}
    assert len(folders) == 13
    for name, folder in folders.items():
        got = [np.load(f) for f in sorted(folder.glob("client-*.npz"))]
        assert len(got) == 4 and all(set(g.files) == {"x_train", "y_train"} for g in got)
        rel = np.concatenate([g["x_train"] for g in got])
        if name == "none":
            assert np.array_equal(np.sort(rel, 0), np.sort(train, 0))
        elif rel.shape[1] == train.shape[1]:
            nearest = np.min([np.linalg.norm(train - row, axis=1).min() for row in rel[:2000]])
            assert nearest > 1e-4 * scale, name
