"""End to end: a real Flower simulation on Ray, through the real `fedsim` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedsim", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_quickstart_runs_and_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "runs"
    accuracies, cache_states = [], []
    # the second run scores on the clients with the pool shipped to them: the same numbers
    for extra in ([], ["--set", "plots.embeddings=pca", "plots.knn_samples=true", "federation.evaluation=client",
                       "federation.share_pool_with_clients=true"]):
        proc = run_cli("run", str(REPO / "scenarios" / "quickstart.toml"), "--output-dir", str(out), *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        run_dir = Path(proc.stdout.strip().splitlines()[-1].split("results: ")[1]).parent
        results = json.loads((run_dir / "results.json").read_text())
        accuracies.append((results["accuracy"], [c["accuracy"] for c in results["clients"]]))
        cache_states.append({c["embedding_cache"] for c in results["clients"]})
    assert accuracies[0] == accuracies[1]  # same scenario + seed => same numbers
    assert cache_states == [{"miss"}, {"hit"}]  # the second run skips extraction...
    assert "reused cached embeddings" in (run_dir / "log.txt").read_text()  # ...and says so

    assert {"scenario", "seed", "engine", "num_clients", "clients", "accuracy"} <= set(results)
    assert results["scenario"] == "quickstart" and results["engine"] == "simulation"
    assert results["num_clients"] == 4 and results["num_failed"] == 0
    ids = sorted(c["id"] for c in results["clients"])
    assert ids == [0, 1, 2, 3]
    for c in results["clients"]:
        assert c["status"] == "ok" and c["n_train"] == 1250 and 240 <= c["n_query"] <= 260
        assert sum(c["label_histogram"]) == c["n_train"] and len(c["label_histogram"]) == 10
        assert 0.0 <= c["accuracy"]["knn"] <= 1.0
    assert results["accuracy"]["knn"] > 0.2  # clearly above chance (0.1)
    assert "global" in proc.stdout and "knn" in proc.stdout
    assert (run_dir / "log.txt").read_text().strip()
    assert (run_dir / "scenario.toml").is_file()
    assert (run_dir / "embeddings_pca.png").stat().st_size > 10_000
    assert (run_dir / "knn_samples.png").stat().st_size > 10_000
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("2")) == []  # no temp folders


def test_client_evaluation_ships_no_pool_unless_allowed(tmp_path):
    """Client-side evaluation ships only compact models: the kNN pool (every client's
    release) stays on the server, and its accuracy is reported as not evaluated."""
    proc = run_cli("run", str(REPO / "scenarios" / "quickstart.toml"), "--output-dir", str(tmp_path / "runs"),
                   "--audit", "--set", "federation.num_clients=2", "federation.evaluation=client",
                   "classifiers.ncm={}", "privacy.anonymeter=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1].split("results: ")[1]).parent
    results = json.loads((run_dir / "results.json").read_text())
    for rel in results["releases"]:
        assert rel["accuracy"]["knn"] is None and 0.5 < rel["accuracy"]["ncm"] <= 1
        low, high = rel["accuracy_ci"]["ncm"]
        assert low < rel["accuracy"]["ncm"] < high and rel["accuracy_n"] == sum(c["n_query"] for c in results["clients"])
        assert "share_pool_with_clients" in rel["evaluation"]["not_evaluated"]["knn"]
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    shipped = {a["name"].split(".")[1] for r in audit if r["direction"] == "server->client" for a in r["arrays"]}
    assert shipped == {"ncm"}  # the class means only
    assert not any(a["name"].startswith("release.x_query") for r in audit for a in r["arrays"])  # queries stay home
    report = (run_dir / "report.md").read_text()
    assert "not evaluated" in report and "Attacker profile: known pairs fraction: 0.1" in report
    laplace = results["releases"][1]["privacy"]  # anonymeter's risks beside fedsim's, with intervals
    assert laplace["anonymeter_linkability_ci_low"] <= laplace["anonymeter_linkability"] <= 1.0
    assert laplace["reidentification_rate_ci_low"] <= laplace["reidentification_rate"] <= laplace[
        "reidentification_rate_ci_high"] and laplace["reidentification_rate_n"] > 0
