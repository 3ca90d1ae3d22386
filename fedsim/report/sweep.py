"""results.csv (one row per configuration x client x classifier) and the sweep's
privacy-utility trade-off plots."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from fedsim.report.results import write_text
from fedsim.report.tradeoff import plot_tradeoff

LEAD = ["label", "method", "params", "client", "classifier", "accuracy", "accuracy_loss", "n_released"]


def _prefixed(insider: dict[str, float] | None) -> dict[str, float]:
    """The insider attacker's metrics as ``insider_<metric>`` columns."""
    return {f"insider_{k}": v for k, v in (insider or {}).items()}


def csv_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for rel in results.get("releases", []):
        base = {"label": rel["label"], "method": rel["method"], "params": json.dumps(rel["params"], sort_keys=True)}
        for clf, acc in rel["accuracy"].items():
            rows.append({**base, "client": "all", "classifier": clf, "accuracy": acc,
                         "accuracy_loss": rel["accuracy_loss"].get(clf, math.nan),
                         "n_released": sum(c["n_released"] for c in rel["clients"]), **rel["privacy"],
                         **_prefixed(rel.get("privacy_insider"))})
            for c in rel["clients"]:
                rows.append({**base, "client": c["id"], "classifier": clf, "accuracy": c["accuracy"].get(clf, math.nan),
                             "accuracy_loss": c["accuracy_loss"].get(clf, math.nan), "n_released": c["n_released"],
                             **c["metrics"], **_prefixed(c.get("metrics_insider"))})
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    extra = sorted({k for r in rows for k in r} - set(LEAD))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LEAD + extra, restval="", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()})
    write_text(path, buf.getvalue())


PLOTS = [
    # file, x metric, y metric, labels, which side of each axis is better
    ("tradeoff_loss_vs_reconstruction.png", "reconstruction_error", "accuracy_loss",
     "reconstruction error (MSE, higher = more private)", "accuracy loss (fraction, lower = more useful)", "high", "low"),
    ("tradeoff_loss_vs_robustness.png", "projection_robustness", "accuracy_loss",
     "projection robustness |Δ mean pairwise distance| (lower = structure kept)", "accuracy loss (fraction, lower = more useful)",
     "high", "low"),
    ("tradeoff_accuracy_vs_reidentification.png", "reidentification_rate", "accuracy",
     "re-identification rate under attack (lower = more private)", "global accuracy (higher = more useful)", "low", "high"),
]


def write_sweep_outputs(run_dir: Path, results: dict[str, Any]) -> list[Path]:
    """results.csv always; trade-off plots (one per classifier) when the run has 2+ configurations."""
    run_dir = Path(run_dir)
    write_csv(run_dir / "results.csv", csv_rows(results))
    releases = results.get("releases", [])
    written: list[Path] = []
    if len(releases) < 2:
        return written
    clfs = list(dict.fromkeys(c for r in releases for c in r["accuracy"]))  # aggregate flows add their own
    for clf in clfs:
        points = [{"label": r["label"], "method": r["method"], "accuracy": r["accuracy"].get(clf, math.nan),
                   "accuracy_loss": r["accuracy_loss"].get(clf, math.nan), **r["privacy"]} for r in releases]
        for name, x, y, xl, yl, bx, by in PLOTS:
            suffix = "" if len(clfs) == 1 else f"_{clf}"
            p = plot_tradeoff(points, x, y, run_dir / name.replace(".png", f"{suffix}.png"), x_label=xl, y_label=yl,
                              better_x=bx, better_y=by, title=f"{results['scenario']}: {clf} on pooled releases "
                              f"({results['num_clients']} clients); privacy metrics averaged over clients")
            if p is not None:
                written.append(p)
    return written
