"""``fedsim compare RUN_DIR...``: one table and plots across runs, from their results.json.

Rows are (run, configuration, classifier) with global accuracy, the accuracy loss against
each run's own ``none`` reference, the client-mean privacy metrics and, for online runs,
the continual-learning metrics.  Plots put the runs side by side per metric.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fedsim.plotting import pyplot, save_figure
from fedsim.report.results import write_text
from fedsim.report.summary import PRIVACY_KEYS
from fedsim.report.sweep import write_csv

ONLINE_KEYS = ("average_accuracy", "mean_round_accuracy", "average_forgetting", "backward_transfer", "forward_transfer")


def load_runs(run_dirs: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    runs = []
    for d in run_dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{d}: no results.json (is this a fedsim run folder?)")
        runs.append((Path(d).name, json.loads(path.read_text(encoding="utf-8"))))
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):  # same folder name in two places: keep them apart
        runs = [(f"{Path(d).parent.name}/{n}", r) for d, (n, r) in zip(run_dirs, runs)]
    return runs


def compare_rows(runs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for run, res in runs:
        online = {(e["label"], name): r["metrics"] for e in res.get("online") or [] for name, r in e["classifiers"].items()}
        for rel in res.get("releases", []):
            for clf, acc in rel["accuracy"].items():
                row = {"label": rel["label"], "method": rel["method"], "params": json.dumps(rel["params"], sort_keys=True),
                       "client": "all", "classifier": clf, "accuracy": acc,
                       "accuracy_loss": rel["accuracy_loss"].get(clf), "run": run, "dataset": res["dataset"],
                       "partition": res["partition"], "num_clients": res["num_clients"],
                       "n_released": sum(c["n_released"] for c in rel["clients"]),
                       **{k: v for k, v in rel["privacy"].items() if k in PRIVACY_KEYS}}
                row.update({k: online[(rel["label"], clf)].get(k) for k in ONLINE_KEYS if (rel["label"], clf) in online})
                rows.append(row)
    return rows


def _bar(rows: list[dict[str, Any]], key: str, path: Path, ylabel: str) -> Path | None:
    rows = [r for r in rows if r.get(key) is not None and isinstance(r[key], (int, float)) and math.isfinite(r[key])]
    if not rows:
        return None
    groups = list(dict.fromkeys(f"{r['label']} / {r['classifier']}" for r in rows))
    runs = list(dict.fromkeys(r["run"] for r in rows))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(groups) * max(1, len(runs)) / 2 + 3), 4.2))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        vals = [next((r[key] for r in rows if r["run"] == run and f"{r['label']} / {r['classifier']}" == g), np.nan)
                for g in groups]
        ax.bar(np.arange(len(groups)) + i * width - 0.4 + width / 2, vals, width, label=run)
    ax.set_xticks(range(len(groups)), groups, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{key} across runs")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _markdown(rows: list[dict[str, Any]], keys: list[str]) -> str:
    def fmt(v: Any) -> str:
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else (
            f"{v:.4f}" if isinstance(v, float) else str(v))

    head = ["run", "label", "classifier"] + keys
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def compare(run_dirs: list[str | Path], out_dir: str | Path) -> list[Path]:
    """Write compare.csv, compare.md and one plot per metric to ``out_dir``."""
    out = Path(out_dir)
    runs = load_runs([Path(d) for d in run_dirs])
    rows = compare_rows(runs)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "compare.csv", rows)
    keys = ["accuracy", "accuracy_loss"] + [k for k in (*PRIVACY_KEYS, *ONLINE_KEYS)
                                            if any(isinstance(r.get(k), (int, float)) for r in rows)]
    write_text(out / "compare.md", f"# fedsim compare\n\nRuns: {', '.join(n for n, _ in runs)}\n\n" + _markdown(rows, keys))
    written = [out / "compare.csv", out / "compare.md"]
    for key in keys:
        p = _bar(rows, key, out / f"compare_{key}.png", key)
        if p is not None:
            written.append(p)
    return written
