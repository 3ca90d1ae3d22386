"""Write a run folder's outputs from what the server produced: results.json, results.csv
and sweep plots, online plots, the message audit (``audit.jsonl``), the
arrays the server received (``received/``, on request) and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fedsim.report.document import build_report
from fedsim.report.online_plots import write_online_plots
from fedsim.report.results import write_json, write_text
from fedsim.report.sweep import write_sweep_outputs


def write_received(run_dir: Path, received: list[tuple[dict[str, Any], dict[str, np.ndarray]]]) -> None:
    """``received/<phase>-<configuration>-<round>/client-<id>.npz``: every array as it arrived."""
    for entry, arrays in received:
        folder = run_dir / "received" / f"{entry['phase']}-{entry['index']}-{entry['round']}"
        folder.mkdir(parents=True, exist_ok=True)
        who = entry["client"] if entry["client"] is not None else f"node{entry['node']}"
        np.savez(folder / f"client-{who}.npz", **arrays)


def write_run_outputs(run_dir: Path, results: dict[str, Any], audit: list[dict[str, Any]],
                      received: list[tuple[dict[str, Any], dict[str, np.ndarray]]]) -> None:
    write_json(run_dir / "results.json", results)
    if audit:
        write_text(run_dir / "audit.jsonl", "".join(json.dumps(r) + "\n" for r in audit))
    if received:
        write_received(run_dir, received)
    if results.get("releases"):
        write_sweep_outputs(run_dir, results)
        write_online_plots(run_dir, results)
        build_report(run_dir)
