"""Every anonymizer inside a real 4-client Flower simulation, checked against the audit of
what crossed the wire: the server never receives an original embedding (except the
queries of methods flagged ``queries_in_clear``), cannot rebuild the clients' key, and no
client receives another client's release."""

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
messages = true
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
    strong, weak = by["gaussian(noise_scale=8.0)"]["privacy"], by["gaussian(noise_scale=0.5)"]["privacy"]
    assert strong["reidentification_rate_ci_high"] < weak["reidentification_rate_ci_low"] - 0.3
    assert "epsilon" in by["dp_gaussian(epsilon=4.0, delta=1e-05)"]["privacy"]
    dp = by["dp_gaussian(epsilon=4.0, delta=1e-05)"]["dp"]  # accounted: one release gives back its own epsilon
    assert dp["delta"] == 1e-5 and abs(dp["epsilon"] - 4.0) < 1e-3 and dp["epsilon_run"] == dp["epsilon"]
    assert sorted(dp["clients"]) == ["0", "1", "2", "3"] and all("dp" not in r for r in results["releases"][:-3])
    assert (run_dir / "epsilon.png").is_file()
    assert (run_dir / "results.csv").is_file()
    assert (run_dir / "tradeoff_accuracy_vs_reidentification.png").is_file()

    # what the server received, compared row by row with every client's originals
    sc = load_scenario(run_dir / "scenario.toml")
    data = [client_data(sc, pid, 4, progress=False) for pid in range(4)]
    train = np.concatenate([d.x_train for d in data])
    query = np.concatenate([d.x_query for d in data])
    originals = {r.tobytes() for r in np.concatenate([train, query])}
    query_rows = {r.tobytes() for r in query}
    in_clear = {r["index"]: r["evaluation"]["queries_in_clear"] for r in results["releases"]}
    assert {r["label"] for r in results["releases"] if r["evaluation"]["queries_in_clear"]} == {
        "kmeans(n_clusters=100, assign_labels=majority)", "gan(n_epochs=3)", "mdav(k=5)"}
    folders = sorted((run_dir / "received").iterdir())
    assert len(folders) == 13 + 1  # every release, plus the pca statistics
    for folder in folders:
        phase, index, _ = folder.name.rsplit("-", 2)
        got = [np.load(f) for f in sorted(folder.glob("client-*.npz"))]
        assert len(got) == 4
        if phase == "stats":
            continue
        x = np.concatenate([g["release.x_train"] for g in got])
        q = np.concatenate([g["release.x_query.0"] for g in got])
        leaked = sum(r.tobytes() in originals for r in x)
        if int(index) == 0:  # none: the reference shares everything -- but not its row order
            assert leaked == len(x)
            for pid, g in enumerate(got):  # position would link row i to the client's i-th record
                at_position = (g["release.x_train"] == data[pid].x_train).all(axis=1).mean()
                assert at_position < 0.02, (pid, at_position)
                assert not (g["release.x_query.0"] == data[pid].x_query).all(axis=1).all()
            continue
        assert leaked == 0, folder.name  # no original training embedding, row by row
        q_leaked = sum(r.tobytes() in query_rows for r in q)
        assert q_leaked == (len(q) if in_clear[int(index)] else 0), folder.name

    # every message to a client: configuration only, plus the pca basis -- never a release
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    to_clients = [r for r in audit if r["direction"] == "server->client"]
    assert {a["name"] for r in to_clients for a in r["arrays"]} == {"shared.mean", "shared.components"}
    assert all(r["client"] in range(4) for r in audit)
    assert results["traffic"]["total_sent_bytes"] == sum(r["bytes"] for r in audit if r["direction"] == "client->server")

    # the old derivation of the key from the scenario seed does not undo the permutation release
    from fedsim.anonymizers import create
    from fedsim.seeding import derive_seed

    perm_index = next(r["index"] for r in results["releases"] if r["method"] == "permutation")
    got = np.load(run_dir / "received" / f"release-{perm_index}-0" / "client-0.npz")
    released = got["release.x_train"]
    old = create("permutation", key=derive_seed(sc.seed, "federation-key")).fit(data[0].x_train)
    rebuilt = {r.tobytes() for r in old.invert(released)}
    assert not rebuilt & {r.tobytes() for r in data[0].x_train}
    # ...while the insider, who holds the real key, undoes it exactly
    perm = next(r for r in results["releases"] if r["method"] == "permutation")
    assert perm["privacy_insider"]["reidentification_rate"] == 1.0
