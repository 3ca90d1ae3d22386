"""Turn the server's rounds into the results.json document.

Accuracy loss is measured against the ``none`` reference configuration of the same run
(same clients, same queries): ``loss = accuracy(none) - accuracy(method)``, as a fraction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedsim import __version__
from fedsim.config import Scenario
from fedsim.report.environment import environment



def config_label(method: str, params: dict[str, Any]) -> str:
    """``gaussian(noise_scale=0.1)``; just the name without parameters."""
    if not params:
        return method
    return f"{method}(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _reference(rounds: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in rounds if r["method"] == "none" and not r["params"]), None)


def assemble_results(scenario: Scenario, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ref = _reference(rounds)
    listed = [r for r in rounds if not (r is ref and "none" not in scenario.anonymizers)] or rounds
    first = listed[0]
    releases = []
    for r in rounds:
        loss = {c: (ref["accuracy"][c] - a) if ref else math.nan for c, a in r["accuracy"].items()}
        clients = []
        for rel in r["releases"]:
            acc = r["per_client"].get(rel.partition_id, {})
            ref_acc = ref["per_client"].get(rel.partition_id, {}) if ref else {}
            clients.append({
                "id": rel.partition_id,
                "n_released": int(len(rel.y_train)),
                "accuracy": acc,
                "accuracy_loss": {c: ref_acc[c] - a if c in ref_acc else math.nan for c, a in acc.items()},
                "metrics": rel.metrics,
                "timings": {"anonymize_s": float(rel.info.get("anonymize-s", math.nan)),
                            "measure_s": float(rel.info.get("measure-s", math.nan))},
            })
        metric_names = sorted({k for c in clients for k in c["metrics"]})
        releases.append({
            "index": r["index"], "label": r["label"], "method": r["method"], "params": r["params"],
            "accuracy": r["accuracy"], "accuracy_loss": loss,
            "privacy": {k: _mean([c["metrics"].get(k, math.nan) for c in clients]) for k in metric_names},
            "clients": clients,
            "failed": [{"id": f["id"], "node_id": f["node_id"], "error": f["error"]} for f in r["failures"]],
            "timings": r["timings"],
        })

    failed_ids: dict[Any, dict[str, Any]] = {}
    for r in rounds:
        for f in r["failures"]:
            failed_ids.setdefault(f["id"] if f["id"] is not None else f"node-{f['node_id']}", f)
    ok_releases: dict[int, Any] = {}
    for r in rounds:  # a client's first release: its extraction (cache hit or miss) happened then
        for rel in r["releases"]:
            ok_releases.setdefault(rel.partition_id, rel)
    clients = []
    for pid in sorted(ok_releases):
        if pid in failed_ids:
            continue
        rel = ok_releases[pid]
        clients.append({
            "id": pid, "status": "ok", "n_train": int(rel.info["n-train"]), "n_query": int(rel.info["n-query"]),
            "label_histogram": [int(c) for c in rel.info["label-histogram"]],
            "accuracy": first["per_client"].get(pid, {}),
            "embedding_cache": rel.info["embedding-cache"],
            "timings": {"extract_s": float(rel.info["extract-s"])},
        })
    clients += [{"id": f["id"], "status": "failed", "node_id": f["node_id"], "error": f["error"]}
                for f in failed_ids.values()]
    fed = scenario.federation
    return {
        "fedsim_version": __version__,
        "scenario": scenario.name,
        "seed": scenario.seed,
        "engine": fed.engine,
        "dataset": scenario.data.dataset,
        "partition": scenario.partition.method,
        "extractor": scenario.extractor.name,
        "anonymizer": {"method": first["method"], "params": first["params"]},
        "num_clients": fed.num_clients,
        "num_failed": len(failed_ids),
        "clients": clients,
        "accuracy": first["accuracy"],
        "releases": releases,
        "timings": {"collect_s": sum(r["timings"]["collect_s"] for r in rounds)},
        "environment": environment(),
    }
