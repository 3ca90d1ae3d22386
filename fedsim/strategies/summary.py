"""Turn the server's rounds into the results.json document.

Accuracy loss is measured against the ``none`` reference configuration of the same run
(same clients, same queries): ``loss = accuracy(none) - accuracy(method)``, as a fraction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from fedsim import __version__
from fedsim.config import Scenario
from fedsim.privacy.stats import wilson
from fedsim.report.environment import environment
from fedsim.strategies.dp import dp_entries


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _reference(rounds: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in rounds if r["method"] == "none" and not r["params"]), None)


def _split_metrics(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(server attacker's metrics, insider's metrics) from a client's ``insider.``-prefixed keys."""
    server = {k: v for k, v in metrics.items() if not k.startswith("insider.")}
    insider = {k[len("insider."):]: v for k, v in metrics.items() if k.startswith("insider.")}
    return server, insider


def _release_entry(r: dict[str, Any], ref: dict[str, Any] | None) -> dict[str, Any]:
    loss = {c: (ref["accuracy"].get(c, math.nan) - a) if ref else math.nan for c, a in r["accuracy"].items()}
    clients = []
    for pid, out in sorted(r["outcomes"].items()):
        acc = r["per_client"].get(pid, {})
        ref_acc = ref["per_client"].get(pid, {}) if ref else {}
        server, insider = _split_metrics(out.metrics)
        clients.append({
            "id": pid, "n_released": out.n_released, "accuracy": acc,
            "accuracy_loss": {c: ref_acc[c] - a if c in ref_acc else math.nan for c, a in acc.items()},
            "metrics": server, **({"metrics_insider": insider} if insider else {}),
            "timings": {k: float(out.timings.get(k, math.nan)) for k in ("anonymize_s", "measure_s")}
            | {k: float(out.timings[k]) for k in ("statistics_s", "train_s") if k in out.timings},
        })
    entry = {
        "index": r["index"], "label": r["label"], "method": r["method"], "params": r["params"],
        "accuracy": r["accuracy"], "accuracy_loss": loss,
        **({"accuracy_n": r["accuracy_interval"]["n"], "accuracy_ci": r["accuracy_interval"]["ci"]}
           if "accuracy_interval" in r else {}),
        "privacy": _client_means(clients, "metrics"),
        "clients": clients, "evaluation": r["evaluation"],
        "failed": [{k: f[k] for k in ("client", "round", "phase", "reason")} for f in r["failures"]],
        "timings": r["timings"],
    }
    if r.get("participation"):
        entry["participation"] = r["participation"]
    if "aggregate" in r:  # fed_ncm / fed_ridge: what the server chose and learned from the sums
        entry["aggregate"] = r["aggregate"]
    if "secure_aggregation" in r:  # SecAgg+: its parameters, scales, survivors, error bounds
        entry["secure_aggregation"] = r["secure_aggregation"]
    if any("metrics_insider" in c for c in clients):
        entry["privacy_insider"] = _client_means(clients, "metrics_insider")
    return entry


def _client_means(clients: list[dict[str, Any]], key: str) -> dict[str, float]:
    """One release's privacy over its clients: rates pooled over every client's evaluated
    records (Wilson interval of the pooled count), other estimates with an interval (AUC,
    mean cosine) averaged with the normal interval of the mean of independent estimates,
    sample sizes summed, attack/reason codes by majority, anything else averaged."""
    tables = [c.get(key, {}) for c in clients]
    names = sorted({k for t in tables for k in t})
    out: dict[str, float] = {}
    for k in names:
        values = [t.get(k) for t in tables]
        if k.endswith(("_attack", "_reason")):
            known = [int(v) for v in values if v is not None and math.isfinite(v)]
            out[k] = float(max(set(known), key=known.count)) if known else math.nan
        elif k.endswith(("_n", "_n_members", "_n_nonmembers")):
            out[k] = float(sum(v for v in values if v is not None and math.isfinite(v)))
        elif not k.endswith(("_ci_low", "_ci_high")):
            out[k] = _mean(values)
    for k in [k for k in names if f"{k}_ci_low" in names]:
        out[k], out[f"{k}_ci_low"], out[f"{k}_ci_high"] = _pooled(k, tables)
    return out


def _pooled(k: str, tables: list[dict[str, float]]) -> tuple[float, float, float]:
    ok = [t for t in tables if all(math.isfinite(t.get(x, math.nan)) for x in (k, f"{k}_ci_low", f"{k}_ci_high"))]
    if not ok:
        return math.nan, math.nan, math.nan
    n_key = f"{k}_n" if f"{k}_n" in ok[0] else f"{k.rsplit('_member', 1)[0]}_n"
    if k.startswith(("reidentification_rate", "near_overlap")) and n_key in ok[0]:  # rates: pool the counts
        n = sum(int(t[n_key]) for t in ok)
        hits = sum(t[k] * t[n_key] for t in ok)
        low, high = wilson(hits, n)
        return hits / n, low, high
    mean = float(np.mean([t[k] for t in ok]))
    half = math.sqrt(sum(((t[f"{k}_ci_high"] - t[f"{k}_ci_low"]) / 2) ** 2 for t in ok)) / len(ok)
    return mean, mean - half, mean + half


def _participation(scenario: Scenario, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The participation settings and, over the whole run, the clients that never took part
    (their metrics are absent: every figure is over the clients that took part)."""
    fed = scenario.federation
    took_part = {p for r in rounds for rec in r.get("participation", []) for p in rec["took_part"]}
    return {**dataclasses.asdict(fed.participation), "deadline_s": fed.participation.deadline_s or fed.round_timeout,
            "never_took_part": sorted(set(range(fed.num_clients)) - took_part)}


def attacker_profile(scenario: Scenario) -> dict[str, Any]:
    """What the privacy metrics assume the server knows (README: "The attacker profile")."""
    return {"known_pairs_fraction": scenario.privacy.aux_fraction, "mechanism_and_scale": "known (scenario)",
            "reference_population": "the client's queries (also the membership controls)",
            "labels": "released in clear, used", "key": "not held (insider: held)", "max_samples": scenario.privacy.max_samples}


def assemble_results(scenario: Scenario, rounds: list[dict[str, Any]], failures: list[dict[str, Any]],
                     num_clients: int) -> dict[str, Any]:
    """The results.json document from the strategies' per-configuration results."""
    ref = _reference(rounds)
    listed = [r for r in rounds if not (r is ref and "none" not in scenario.anonymizers)] or rounds
    first = listed[0] if listed else {"method": "none", "params": {}, "accuracy": {}, "per_client": {}}
    releases = [_release_entry(r, ref) for r in rounds]
    accounted = dp_entries(rounds, scenario.privacy.dp_delta)
    for entry in releases:
        if entry["index"] in accounted:
            entry["dp"] = accounted[entry["index"]]
    failed = {f["client"]: f for f in failures}
    outcomes: dict[int, Any] = {}
    for r in rounds:  # a client's first release: its extraction (cache hit or miss) happened then
        for pid, out in r["outcomes"].items():
            outcomes.setdefault(pid, out)
    clients = []
    for pid in sorted(outcomes):
        out = outcomes[pid]
        entry = {"id": pid, "status": "failed" if pid in failed else "ok", "n_train": out.n_train,
                 "n_query": out.n_query, "label_histogram": out.label_histogram,
                 "accuracy": first["per_client"].get(pid, {}), "embedding_cache": out.embedding_cache,
                 "timings": {"extract_s": float(out.timings.get("extract_s", math.nan))}}
        if pid in failed:
            entry["failure"] = {k: failed[pid][k] for k in ("round", "phase", "reason")}
            entry["error"] = failed[pid]["reason"]
        clients.append(entry)
    clients += [{"id": f["client"], "status": "failed", "node_id": f["node_id"], "error": f["reason"],
                 "failure": {k: f[k] for k in ("round", "phase", "reason")}}
                for f in failures if f["client"] not in outcomes]
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
        "num_clients": num_clients,
        "num_failed": len(failed),
        "min_clients": fed.quorum(),
        "evaluation": fed.evaluation,
        "clients": clients,
        "accuracy": first["accuracy"],
        "releases": releases,
        "failures": [{k: f[k] for k in ("round", "index", "phase", "client", "reason")} for f in failures],
        "attacker_profile": attacker_profile(scenario),
        **({"participation": _participation(scenario, rounds)} if fed.participation.enabled() else {}),
        "timings": {"collect_s": sum(r["timings"]["collect_s"] for r in rounds)},
        "environment": environment(),
    }
