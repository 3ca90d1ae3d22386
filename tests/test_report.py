"""Run reports (report.md / report.html), per-client comparison and `fedsim compare`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fedsim.cli import main
from fedsim.report.results import write_json


def fake_results(accuracy: float, online: bool = False, n_clients: int = 3) -> dict:
    """A results.json document with every documented key (values made up, shapes real)."""
    clients = [{"id": i, "status": "ok", "n_train": 100, "n_query": 20, "label_histogram": [50 - 10 * i, 50 + 10 * i],
                "accuracy": {"knn": accuracy}, "embedding_cache": "miss", "timings": {"extract_s": 1.0}}
               for i in range(n_clients)]

    def release(label, method, acc, reid):
        return {"index": 0, "label": label, "method": method, "params": {}, "accuracy": {"knn": acc},
                "accuracy_loss": {"knn": accuracy - acc},
                "privacy": {"reidentification_rate": reid, "mia_auc": 0.6, "near_overlap": None},
                "clients": [{"id": i, "n_released": 100, "accuracy": {"knn": acc - 0.01 * i},
                             "accuracy_loss": {"knn": 0.01 * i},
                             "metrics": {"reidentification_rate": reid + 0.05 * i, "mia_auc": 0.6}}
                            for i in range(n_clients)],
                "failed": [], "timings": {"collect_s": 1.0, "classifiers": {"knn": {"fit_s": 0.1}}}}

    res = {"fedsim_version": "0", "scenario": "fake", "seed": 0, "engine": "simulation", "dataset": "cifar10-mini",
           "partition": "dirichlet", "extractor": "compact_cnn", "anonymizer": {"method": "none", "params": {}},
           "num_clients": n_clients, "num_failed": 0, "clients": clients, "accuracy": {"knn": accuracy},
           "releases": [release("none", "none", accuracy, 1.0), release("gaussian(noise_scale=1)", "gaussian",
                                                                           accuracy - 0.1, 0.2)],
           "timings": {"collect_s": 2.0, "server_total_s": 3.0}, "evaluation": "server",
           "failures": [{"round": 0, "index": 1, "phase": "release", "client": 2, "reason": "injected fault"}],
           "attacker_profile": {"known_pairs_fraction": 0.1, "labels": "released in clear, used"},
           "traffic": {"clients": {str(i): {"sent_bytes": 1000 * (i + 1), "received_bytes": 100, "messages": [
               {"phase": "release", "index": 0, "round": 0, "sent_bytes": 1000 * (i + 1), "received_bytes": 100}]}
               for i in range(n_clients)}, "total_sent_bytes": 6000, "total_received_bytes": 300},
           "environment": {"python": "3", "platform": "x", "packages": {"torch": "2"}, "cpu": "cpu",
                           "cpu_count": 2, "cuda": None, "bf16_cpu": False}}
    perm = release("permutation", "permutation", accuracy, 0.9)
    perm["privacy_insider"] = {"reidentification_rate": 1.0, "mia_auc": 1.0}
    res["releases"].append(perm)
    if online:
        R = [[accuracy] * 2] * 2
        res["online"] = [{"label": "none", "batch_size": 10, "rounds": 2, "setting": "iid",
                          "domains": ["clean", "clean"],
                          "classifiers": {"knn": {"R": R, "accuracy_per_round": [accuracy] * 2,
                                                  "metrics": {"average_accuracy": accuracy,
                                                              "average_forgetting": 0.0}}},
                          "replay_effect": {}}]
    return res


def make_run(tmp_path: Path, name: str, accuracy: float, online: bool = False) -> Path:
    run = tmp_path / name
    run.mkdir()
    write_json(run / "results.json", fake_results(accuracy, online))
    (run / "scenario.toml").write_text('name = "fake"\n')
    return run


def test_report_has_every_section_and_embeds_its_plots(tmp_path, capsys):
    run = make_run(tmp_path, "20260101-000000-fake", 0.9, online=True)
    from fedsim.report.online_plots import write_online_plots

    write_online_plots(run, json.loads((run / "results.json").read_text()))
    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    for heading in ("# fedsim report: 20260101-000000-fake", "## Scenario", "## Data partition",
                    "## Accuracy per classifier", "## Privacy per method", "## Clients compared",
                    "## Attackers: server and insider", "## What crossed the wire", "### Failures",
                    "## Online continual learning", "## Timings", "## Environment"):
        assert heading in md, heading
    assert "| permutation | insider | 1.0000 | 1.0000 |" in md
    assert "Attacker profile: known pairs fraction: 0.1; labels: released in clear, used." in md
    for png in ("partition.png", "clients_reidentification_rate.png", "clients_accuracy.png", "online_R-none.png",
                "traffic.png"):
        assert f"]({png})" in md and (run / png).stat().st_size > 5000
    page = (run / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == md.count("![")  # self-contained: every plot inlined
    assert "src='http" not in page and "<table>" in page
    # client 2 is the most skewed (30/70) and the most re-identifiable: both visible side by side
    assert "| gaussian(noise_scale=1) | 2 | 0.8813 |" in md


def test_report_of_a_folder_without_results_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_compare_three_runs_writes_table_and_plots(tmp_path, capsys):
    runs = [make_run(tmp_path, f"run{i}", 0.7 + 0.1 * i, online=i == 2) for i in range(3)]
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    table = (out / "compare.md").read_text()
    assert table.count("| run | label |") == 1 and "near_overlap" not in table and all(f"run{i}" in table for i in range(3))
    rows = (out / "compare.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 3  # header + 3 runs x 3 configurations x 1 classifier
    for key in ("accuracy", "accuracy_loss", "reidentification_rate", "average_accuracy"):
        assert (out / f"compare_{key}.png").stat().st_size > 5000
