"""The REPRODUCTION.md table "Sharing records or sharing aggregates" from runs of
scenarios/compare_sharing.toml: per configuration, what the server sees, the accuracy of
each classifier, the bytes the clients sent, the server attacker's re-identification rate
and membership AUC (client means), and epsilon (the configuration alone, and composed over
the run's DP configurations).

    python scripts/sharing_table.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

COLUMNS = {"knn": "kNN", "ncm": "NCM", "fc": "FC", "ridge": "ridge"}
AGGREGATE_FLOWS = {"fed_ncm", "fed_ridge"}


def sees(entry: dict[str, Any]) -> str:
    """What the server receives from one client in this configuration."""
    if "secure_aggregation" in entry:
        return "the sum only (SecAgg+)"
    if entry["method"] in AGGREGATE_FLOWS:
        return "aggregates (per client)"
    if entry["method"] == "fedavg_head":
        return "model updates (per client)"
    return "records"


def sent_mb(results: dict[str, Any], index: int) -> float:
    """Bytes every client sent for configuration ``index``, in MB."""
    return sum(m["sent_bytes"] for c in results["traffic"]["clients"].values() for m in c["messages"]
               if m["index"] == index) / 1e6


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    head = ["configuration", "what the server sees", *COLUMNS.values(), "sent to server (MB, all clients)",
            "re-identification", "MIA AUC", "epsilon", "epsilon (run)", "clients"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in results["releases"]:
        privacy = e.get("privacy") or {}
        dp = e.get("dp")
        row = [e["label"], sees(e), *(_fmt(e["accuracy"].get(k)) for k in COLUMNS), f"{sent_mb(results, e['index']):.1f}",
               _fmt(privacy.get("reidentification_rate")), _fmt(privacy.get("mia_auc")),
               _fmt(dp["epsilon"], 2) if dp else "-", _fmt(dp["epsilon_run"], 2) if dp else "-", str(len(e["clients"]))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    for run_dir in parser.parse_args().run_dirs:
        results = json.loads((run_dir / "results.json").read_text())
        partition = results.get("partition", "?")
        print(f"{run_dir.name} ({partition}, run time {results['timings'].get('simulation_s', 0):.0f} s):\n")
        print(table(results) + "\n")


if __name__ == "__main__":
    main()
