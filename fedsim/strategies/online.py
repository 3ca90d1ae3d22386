"""``online``: online continual learning, one Flower round per online round.

Round ``i``: every client sends the anonymized release of its next unseen batch (drawn in
round ``i``'s image domain); the server updates every classifier incrementally
(``partial_fit``) -- and, with generative replay, a ``<name>+replay`` twin trained on the
same releases plus replayed samples -- then scores every client's queries in EVERY test
domain (server-side on the transformed queries, or client-side with the shipped models).
That fills row ``i`` of the accuracy matrix ``R[i, j]`` (after round ``i``, on round
``j``'s test domain; pooled over the clients that took part in round ``i``), from which :mod:`fedsim.online.metrics` computes the standard
continual-learning metrics.

Accuracy before any training (the forward-transfer baseline ``b``) is chance, 1 / number
of classes: none of the classifiers can predict better before it has seen data.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from fedsim import classifiers
from fedsim.config import Scenario
from fedsim.online.metrics import continual_metrics, study_metrics, timing_summary
from fedsim.online.replay import REPLAY_SUFFIX, ReplayGenerator, ReplayMemory
from fedsim.seeding import derive_seed
from fedsim.strategies.base import FedsimStrategy, Scores, score_on_server

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


def _last_row_mean(R: np.ndarray) -> float:
    """A client's average accuracy after the last round it took part in (its R has NaN
    rows for the rounds it sat out under sampled participation)."""
    seen = [row for row in R if np.isfinite(row).all()]
    return float(np.mean(seen[-1])) if seen else math.nan


class OnlineStrategy(FedsimStrategy):
    release_phase = "online"
    evaluate_phase = "online_evaluate"

    @classmethod
    def plan(cls, scenario: Scenario) -> list[tuple[str, dict[str, Any], str, dict[str, Any]]]:
        """Every anonymizer configuration x batch size (a list of batch sizes sweeps it)."""
        sizes = scenario.online.batch_sizes()
        return [(m, p, label + (f" [batch {b}]" if len(sizes) > 1 else ""), {"batch_size": b})
                for m, p, label, _ in super().plan(scenario) for b in sizes]

    def __init__(self, *args: Any, batch_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        on = self.scenario.online
        self.batch_size = batch_size
        self.num_rounds = on.rounds
        self.schedule = [d.label for d in on.schedule(self.scenario.seed)]
        self.domains = [d.label for d in on.test_domains(self.scenario.seed)]
        self.n_domains = len(self.domains)
        self.learners = make_learners(self.scenario)
        self.replay: dict[str, Any] | None = None
        self.counts: dict[int, dict[str, np.ndarray]] = {}  # pid -> name -> (T, n_domains) correct counts
        self.n_query: dict[int, int] = {}
        self.train_s: dict[str, list[float]] = {n: [] for n in self.learners}
        self.infer_s: dict[str, list[float]] = {n: [] for n in self.learners}  # scoring seconds per round
        self.client_metrics: dict[int, list[dict[str, float]]] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        pids = self.begin_round(server_round)
        return self.send(self.request("online", server_round, batch_size=self.batch_size), pids)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        releases = self.accept_releases(replies, server_round)
        for rel in releases:
            self.client_metrics.setdefault(rel.partition_id, []).append(rel.metrics)
            self.outcomes[rel.partition_id].timings = rel.timings
        X = np.concatenate([r.x_train for r in releases]) if releases else np.zeros((0, 0), np.float32)
        y = np.concatenate([r.y_train for r in releases]) if releases else np.zeros(0, np.int64)
        if len(y):
            for name, s in self._train(X, y, server_round).items():
                self.train_s[name].append(s)
        if self.mode == "server":
            self._record(server_round, score_on_server(
                self.learners, {r.partition_id: (r.x_query_domains, r.y_query) for r in releases}))
        return None, self.metrics({"n_released": len(y), "n_clients": len(releases)})

    def _train(self, X: np.ndarray, y: np.ndarray, server_round: int) -> dict[str, float]:
        """One incremental update of every learner; seconds per learner (replay twins include
        the generator's time, the cost of having replay)."""
        rp = self.scenario.online.replay
        if rp.enabled and self.replay is None:
            seed = self.scenario.seed
            self.replay = {"generator": ReplayGenerator(self.fed.num_classes, X.shape[1], rp.latent_dim, rp.lr,
                                                        rp.n_epochs_gan, rp.batch_size_gan,
                                                        seed=derive_seed(seed, "replay", self.index)),
                           "memory": ReplayMemory(rp.memory_size, seed=derive_seed(seed, "replay-memory", self.index))}
        seconds = {}
        mem_X = mem_y = None
        if self.replay is not None:
            mem_X, mem_y = self.replay["memory"].sample(rp.memory_sample_percentage)
        for name, clf in self.learners.items():
            t0 = time.perf_counter()
            if name.endswith(REPLAY_SUFFIX) and mem_X is not None and len(mem_y):
                clf.partial_fit(np.concatenate([X, mem_X]), np.concatenate([y, mem_y]))
            else:
                clf.partial_fit(X, y)
            seconds[name] = time.perf_counter() - t0
        if self.replay is not None:
            t0 = time.perf_counter()
            self.replay["generator"].update(X, y)
            self.replay["memory"].add(*self.replay["generator"].sample(len(y)))
            t_gen = time.perf_counter() - t0
            for name in seconds:
                if name.endswith(REPLAY_SUFFIX):
                    seconds[name] += t_gen
        return seconds

    def models(self) -> dict[str, Any]:
        return self.learners

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        if self.mode == "client":
            self._record(server_round, self.accept_scores(replies, server_round, list(self.shippable(self.learners))))
        r = server_round - 1
        column = self.domains.index(self.schedule[r])
        row = {n: float(self._pooled(n)[r, column]) for n in self.learners}
        log.info("%s round %d/%d (%s): %s", self.label, server_round, self.num_rounds, self.schedule[r],
                 {n: round(v, 4) for n, v in row.items()})
        return self.metrics({f"accuracy.{n}": v for n, v in row.items()})

    def _record(self, server_round: int, scores: Scores) -> None:
        T, r = self.num_rounds, server_round - 1
        for name in self.learners:  # server: its one batched scoring; client: the slowest client
            seconds = [s[name] for s in scores.infer_s.values() if name in s]
            if seconds:
                self.infer_s[name].append(sum(seconds) if self.mode == "server" else max(seconds))
        for pid, correct in scores.correct.items():
            self.n_query[pid] = scores.n_query[pid]
            mats = self.counts.setdefault(pid, {n: np.full((T, self.n_domains), np.nan) for n in self.learners})
            for name, per in correct.items():
                mats[name][r] = per

    def _timings(self, name: str) -> dict[str, float]:
        """Mean training and inference seconds per round (NaN inference: never evaluated)."""
        timing = timing_summary(self.train_s[name] or [0.0], self.infer_s[name] or [0.0])
        if not self.infer_s[name]:
            timing["avg_inference_time_s"] = math.nan
        return timing

    def _pooled(self, name: str) -> np.ndarray:
        """(rounds, domains) accuracy pooled over each round's participants: with sampled
        participation a round's row counts only the clients that took part in it."""
        out = np.full((self.num_rounds, self.n_domains), np.nan)
        for r in range(self.num_rounds):
            present = [p for p in self.counts if self.n_query[p] and np.isfinite(self.counts[p][name][r]).all()]
            total = sum(self.n_query[p] for p in present)
            if total:
                out[r] = sum(self.counts[p][name][r] for p in present) / total
        return out

    def result(self) -> dict[str, Any]:
        T = self.num_rounds
        columns = [self.domains.index(d) for d in self.schedule]
        chance = np.full(T, 1.0 / (self.fed.num_classes or 1))
        pids = [p for p in self.counts if self.n_query[p]]
        per_classifier, per_client_R = {}, {}
        for name in self.learners:
            R = self._pooled(name)[:, columns]  # round x distinct domain -> R[i, j] on round j's domain
            # a classifier that was not evaluated (client-side evaluation, pool not shared) has no R
            known = R if np.isfinite(R).all() else np.zeros((T, T))
            cl, study = continual_metrics(known, chance), study_metrics(np.diag(known))
            if known is not R:
                cl, study = dict.fromkeys(cl, math.nan), dict.fromkeys(study, math.nan)
            per_classifier[name] = {
                "R": R.tolist(), "accuracy_per_round": np.diag(R).tolist(),
                "metrics": {**cl, **self._timings(name)},
                "study_metrics": study, "train_s": self.train_s[name],
            }
        for pid in pids:
            per_client_R[pid] = {n: (self.counts[pid][n] / self.n_query[pid])[:, columns] for n in self.learners}
        replay_effect = {}
        if self.scenario.online.replay.enabled:
            for name in self.scenario.classifiers:
                a, b = per_classifier[name]["metrics"], per_classifier[name + REPLAY_SUFFIX]["metrics"]
                replay_effect[name] = {k: b[k] - a[k] for k in ("average_accuracy", "mean_round_accuracy",
                                                                 "average_forgetting", "backward_transfer")}
        for pid, ms in self.client_metrics.items():
            keys = sorted({k for m in ms for k in m})
            finite = {k: [m[k] for m in ms if math.isfinite(m.get(k, math.nan))] for k in keys}
            self.outcomes[pid].metrics = {k: float(np.mean(v)) if v else math.nan for k, v in finite.items()}
        online = {
            "index": self.index, "label": self.label, "method": self.method, "params": self.params,
            "batch_size": self.batch_size, "setting": self.scenario.online.setting, "rounds": T,
            "domains": self.schedule, "replay": self.scenario.online.replay.enabled, "classifiers": per_classifier,
            "replay_effect": replay_effect,
            "clients": {str(pid): {n: {"R": R[n].tolist(), "accuracy_per_round": np.diag(R[n]).tolist(),
                                       "average_accuracy": _last_row_mean(R[n])} for n in self.learners}
                        for pid, R in per_client_R.items()},
            "participation": self.participation,
            "failed": [{"client": f["client"], "round": f["round"], "phase": f["phase"], "reason": f["reason"]}
                       for f in self.failures()],
        }
        return {"index": self.index, "label": self.label, "method": self.method, "params": self.params,
                "outcomes": self.outcomes, "failures": self.failures(),
                "accuracy": {n: per_classifier[n]["metrics"]["average_accuracy"] for n in self.learners},
                "per_client": {pid: {n: _last_row_mean(R[n]) for n in self.learners}
                               for pid, R in per_client_R.items()},
                "participation": self.participation,
                "evaluation": self.evaluation_info(),
                "timings": {"collect_s": self.t_collect,
                            "classifiers": {n: {"fit_s": float(np.sum(self.train_s[n])),
                                                "evaluate_round_s": float(np.mean(self.infer_s[n]))
                                                if self.infer_s[n] else math.nan} for n in self.learners}},
                "online": online}
