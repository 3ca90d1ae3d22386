"""The server's side of online continual learning, as Flower rounds.

Round ``i``: every client sends the anonymized release of its next unseen batch (drawn in
round ``i``'s image domain); the server updates every classifier incrementally
(``partial_fit``) -- and, with generative replay, a ``<name>+replay`` twin trained on the
same releases plus replayed samples -- then ships the classifiers to the clients, which
score their own queries in EVERY test domain and return counts.  That fills row ``i`` of
the accuracy matrix ``R[i, j]`` (after round ``i``, on round ``j``'s test domain), from
which :mod:`fedsim.online.metrics` computes the standard continual-learning metrics.

Accuracy before any training (the forward-transfer baseline ``b``) is chance, 1 / number
of classes: none of the classifiers can predict better before it has seen data.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
from flwr.serverapp import Grid

from fedsim import classifiers
from fedsim.config import Scenario
from fedsim.online.client import REPLAY_SUFFIX, schedule, test_domains
from fedsim.online.metrics import continual_metrics, study_metrics, timing_summary
from fedsim.online.replay import ReplayGenerator, ReplayMemory
from fedsim.seeding import derive_seed
from fedsim.strategies.messaging import ask, collect_records, parse_replies
from fedsim.strategies.pooled import ClientRelease

log = logging.getLogger(__name__)


def make_learners(scenario: Scenario) -> dict[str, Any]:
    """Every configured classifier, plus its replay twin when replay is on."""
    names = list(scenario.classifiers)
    if scenario.online.replay.enabled:
        names += [n + REPLAY_SUFFIX for n in scenario.classifiers]
    learners = {}
    for name in names:
        base = name.removesuffix(REPLAY_SUFFIX)
        params = dict(scenario.classifiers[base])
        if "seed" in (classifiers.REGISTRY.parameters(base) or []):
            params.setdefault("seed", derive_seed(scenario.seed, "classifier", base))
        learners[name] = classifiers.create(base, **params)
    return learners


def _evaluate(grid: Grid, node_ids: list[int], index: int, method: str, params: dict[str, Any], round_index: int,
              learners: dict[str, Any], n_domains: int, timeout: float):
    """Clients score their queries in every domain; returns per-client counts and failures."""
    states = {f"classifier.{name}": clf.get_state() for name, clf in learners.items()}
    replies = ask(grid, node_ids, "online_evaluate", index, method, params, timeout, states,
                  extra={"round": round_index})
    records, failures = collect_records(replies, node_ids, "scores")
    scores = {int(rec["partition-id"]): {
        "n": int(rec["n-query"]), "infer_s": {name: float(rec[f"infer-s.{name}"]) for name in learners},
        "correct": {name: [int(rec[f"correct.{name}.{j}"]) for j in range(n_domains)] for name in learners}}
        for rec in records}
    return scores, failures


def _train(learners: dict[str, Any], X: np.ndarray, y: np.ndarray, replay: dict[str, Any] | None,
           cfg: Any) -> dict[str, float]:
    """One incremental update of every learner; seconds per learner (replay twins include
    the generator's time, the cost of having replay)."""
    seconds = {}
    mem_X = mem_y = None
    if replay is not None:
        mem_X, mem_y = replay["memory"].sample(cfg.memory_sample_percentage)
    for name, clf in learners.items():
        t0 = time.perf_counter()
        if name.endswith(REPLAY_SUFFIX) and mem_X is not None and len(mem_y):
            clf.partial_fit(np.concatenate([X, mem_X]), np.concatenate([y, mem_y]))
        else:
            clf.partial_fit(X, y)
        seconds[name] = time.perf_counter() - t0
    if replay is not None:
        t0 = time.perf_counter()
        replay["generator"].update(X, y)
        replay["memory"].add(*replay["generator"].sample(len(y)))
        t_gen = time.perf_counter() - t0
        for name in seconds:
            if name.endswith(REPLAY_SUFFIX):
                seconds[name] += t_gen
    return seconds


def run_online(grid: Grid, scenario: Scenario, node_ids: list[int], index: int, method: str,
               params: dict[str, Any], batch_size: int, label: str) -> dict[str, Any]:
    """All rounds of one (anonymizer configuration, batch size); a server round entry."""
    on, timeout = scenario.online, scenario.federation.round_timeout
    T = on.rounds
    domains = [d.label for d in test_domains(scenario)]
    columns = [domains.index(d.label) for d in schedule(scenario)]
    learners = make_learners(scenario)
    replay = None
    counts: dict[int, dict[str, np.ndarray]] = {}  # pid -> name -> (T, n_domains) correct counts
    n_query: dict[int, int] = {}
    train_s: dict[str, list[float]] = {n: [] for n in learners}
    infer_s: dict[str, list[float]] = {n: [] for n in learners}  # slowest client, per round
    failures: list[dict[str, Any]] = []
    per_client_rel: dict[int, dict[str, Any]] = {}
    t_collect = 0.0
    for r in range(T):
        t0 = time.perf_counter()
        replies = ask(grid, node_ids, "online", index, method, params, timeout,
                      extra={"round": r, "batch-size": batch_size})
        releases, round_failures = parse_replies(replies, node_ids)
        t_collect += time.perf_counter() - t0
        for f in round_failures:
            f["round"] = r
            log.error("%s round %d: client %s failed: %s", label, r + 1, f["id"], (f["error"] or "").splitlines()[0])
        failures += round_failures
        if not releases:
            raise RuntimeError(f"{label} round {r + 1}: all clients failed; first error: {round_failures[0]['error']}")
        X = np.concatenate([rel.x_train for rel in releases])
        y = np.concatenate([rel.y_train for rel in releases])
        if on.replay.enabled and replay is None:
            n_classes = len(releases[0].info["label-histogram"])
            rp = on.replay
            replay = {"generator": ReplayGenerator(n_classes, X.shape[1], rp.latent_dim, rp.lr, rp.n_epochs_gan,
                                                   rp.batch_size_gan, seed=derive_seed(scenario.seed, "replay", index)),
                      "memory": ReplayMemory(rp.memory_size, seed=derive_seed(scenario.seed, "replay-memory", index))}
        for rel in releases:
            acc = per_client_rel.setdefault(rel.partition_id, {"y": [], "metrics": [], "info": rel.info})
            acc["y"].append(rel.y_train)
            acc["metrics"].append(rel.metrics)
        if len(y):
            for name, s in _train(learners, X, y, replay, on.replay).items():
                train_s[name].append(s)
        scores, eval_failures = _evaluate(grid, node_ids, index, method, params, r, learners, len(domains), timeout)
        failures += [{**f, "round": r} for f in eval_failures]
        for name in learners:
            infer_s[name].append(max((s["infer_s"][name] for s in scores.values()), default=math.nan))
        for pid, s in scores.items():
            n_query[pid] = s["n"]
            mats = counts.setdefault(pid, {n: np.full((T, len(domains)), np.nan) for n in learners})
            for name in learners:
                mats[name][r] = s["correct"][name]
        log.info("%s round %d/%d (%s): %s", label, r + 1, T, schedule(scenario)[r].label,
                 {n: round(_pooled_row(counts, n_query, n, r, columns[r]), 4) for n in learners})
    return _entry(scenario, index, label, method, params, batch_size, learners, counts, n_query, columns,
                  domains, train_s, infer_s, failures, per_client_rel, t_collect)


def _pooled_row(counts, n_query, name: str, r: int, column: int) -> float:
    """Pooled accuracy after round r on one domain (for the progress log)."""
    total = sum(n_query[p] for p in counts)
    return float(sum(counts[p][name][r, column] for p in counts) / total) if total else math.nan


def _entry(scenario, index, label, method, params, batch_size, learners, counts, n_query, columns, domains,
           train_s, infer_s, failures, per_client_rel, t_collect) -> dict[str, Any]:
    T = scenario.online.rounds
    n_classes = len(next(iter(per_client_rel.values()))["info"]["label-histogram"])
    chance = np.full(T, 1.0 / n_classes)
    total = sum(n_query.values())
    per_classifier, per_client_R = {}, {}
    for name in learners:
        pooled = sum(counts[p][name] for p in counts) / total if total else np.full((T, len(domains)), np.nan)
        R = pooled[:, columns]  # round x distinct domain -> R[i, j] on round j's domain
        per_classifier[name] = {
            "R": R.tolist(),
            "accuracy_per_round": np.diag(R).tolist(),
            "metrics": {**continual_metrics(R, chance), **timing_summary(train_s[name], infer_s[name])},
            "study_metrics": study_metrics(np.diag(R)),
            "train_s": train_s[name],
        }
    for pid in counts:
        per_client_R[pid] = {n: (counts[pid][n] / n_query[pid])[:, columns] if n_query[pid] else None
                             for n in learners}
    replay_effect = {}
    if scenario.online.replay.enabled:
        for name in scenario.classifiers:
            a, b = per_classifier[name]["metrics"], per_classifier[name + REPLAY_SUFFIX]["metrics"]
            replay_effect[name] = {k: b[k] - a[k] for k in ("average_accuracy", "mean_round_accuracy",
                                                             "average_forgetting", "backward_transfer")}
    releases = []
    for pid, acc in sorted(per_client_rel.items()):
        keys = sorted({k for m in acc["metrics"] for k in m})
        mean_metrics = {k: float(np.nanmean([m.get(k, math.nan) for m in acc["metrics"]])) for k in keys}
        releases.append(ClientRelease(partition_id=pid, x_train=np.empty((0, 0), np.float32),
                                      y_train=np.concatenate(acc["y"]), info=acc["info"], metrics=mean_metrics))
    accuracy = {n: per_classifier[n]["metrics"]["average_accuracy"] for n in learners}
    per_client = {pid: {n: float(np.mean(R[n][-1])) for n in learners if R[n] is not None}
                  for pid, R in per_client_R.items()}
    online = {
        "index": index, "label": label, "method": method, "params": params, "batch_size": batch_size,
        "setting": scenario.online.setting, "rounds": T, "domains": [d.label for d in schedule(scenario)],
        "replay": scenario.online.replay.enabled, "classifiers": per_classifier, "replay_effect": replay_effect,
        "clients": {str(pid): {n: {"R": R[n].tolist(), "accuracy_per_round": np.diag(R[n]).tolist(),
                                   "average_accuracy": float(np.mean(R[n][-1]))}
                               for n in learners if R[n] is not None} for pid, R in per_client_R.items()},
        "failed": [{"id": f["id"], "round": f.get("round"), "error": f["error"]} for f in failures],
    }
    return {"index": index, "label": label, "method": method, "params": params, "releases": releases,
            "failures": failures, "accuracy": accuracy, "per_client": per_client,
            "timings": {"collect_s": t_collect,
                        "classifiers": {n: {"fit_s": float(np.sum(train_s[n])), "evaluate_round_s": float(np.mean(infer_s[n]))}
                                        for n in learners}},
            "online": online}
