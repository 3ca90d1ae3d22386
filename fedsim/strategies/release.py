"""``release``: one-shot anonymized releases, one Flower round per anonymizer configuration.

Round: (``pca`` only: the clients' sufficient statistics -> the shared basis) -> every
client's release -> every classifier fitted on the pooled releases -> scores on every
client's transformed queries (server-side) or the clients' own counts (client-side).

:class:`OneShotStrategy` is what a one-round flow shares with the aggregate flows
(fedsim.strategies.aggregates): models fitted once, scored, reported as one
``releases[]`` entry.
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

from fedsim import anonymizers, classifiers
from fedsim.privacy.stats import wilson
from fedsim.protocol import StatsReply
from fedsim.strategies.base import FedsimStrategy, Scores, score_on_server

log = logging.getLogger(__name__)


class OneShotStrategy(FedsimStrategy):
    """One round: subclasses fill ``fitted`` (and ``fit_s``) in ``aggregate_train``; scoring
    (server- or client-side), accuracy and the result are shared."""

    num_rounds = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fitted: dict[str, Any] = {}
        self.fit_s: dict[str, float] = {}
        self.scores = Scores()
        self.t_evaluate = 0.0

    def models(self) -> dict[str, Any]:
        return self.fitted

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        if self.mode == "client":
            t0 = time.perf_counter()
            self.scores = self.accept_scores(replies, server_round, list(self.shippable(self.fitted)))
            self.t_evaluate = time.perf_counter() - t0
        accuracy, _ = self.accuracy()
        return self.metrics({f"accuracy.{k}": v for k, v in accuracy.items()})

    def accuracy(self) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
        """Global accuracy (all queries pooled) and per-client accuracy; NaN for a classifier
        that was not fitted or not evaluated."""
        names = self.classifier_names()
        s = self.scores
        total = sum(s.n_query[p] for p in s.correct)
        overall = {n: (sum(s.correct[p][n][0] for p in s.correct if n in s.correct[p]) / total)
                   if total and all(n in s.correct[p] for p in s.correct) else math.nan for n in names}
        per_client = {p: {n: s.correct[p][n][0] / s.n_query[p] for n in names if n in s.correct[p]}
                      if s.n_query[p] else {} for p in s.correct}
        return overall, per_client

    def accuracy_interval(self, accuracy: dict[str, float]) -> dict[str, Any]:
        """Queries scored and the Wilson 95% interval of each global accuracy."""
        n = sum(self.scores.n_query[p] for p in self.scores.correct)
        return {"n": n, "ci": {c: list(wilson(a * n, n)) if a == a else [math.nan, math.nan]
                               for c, a in accuracy.items()}}

    def result(self) -> dict[str, Any]:
        accuracy, per_client = self.accuracy()
        timings = {"collect_s": self.t_collect,
                   "classifiers": {n: {"fit_s": self.fit_s.get(n, math.nan), "evaluate_round_s": self.t_evaluate}
                                   for n in self.classifier_names()}}
        return {"index": self.index, "label": self.label, "method": self.method, "params": self.params,
                "outcomes": self.outcomes, "failures": self.failures(), "accuracy": accuracy,
                "per_client": per_client, "evaluation": self.evaluation_info(), "timings": timings,
                "accuracy_interval": self.accuracy_interval(accuracy), "participation": self.participation}


class ReleaseStrategy(OneShotStrategy):
    """Every client's anonymized release, every configured classifier fitted on their pool."""

    def _shared_state(self, grid: Grid, pids: list[int] | None) -> dict[str, np.ndarray] | None:
        """Federated estimate of a shared transform (pca basis) from the statistics of the
        round's participants (a late client's statistics are late too)."""
        if not anonymizers.needs_shared_state(self.method):
            return None
        replies = grid.send_and_receive(self.fed.messages(self.request("stats", 1), pids), timeout=self.fed.timeout)

        def check(reply: StatsReply) -> None:
            reply.validate(self.limits)

        accepted = self.fed.accept(replies, "stats", self.index, 0, check, late=self.late())
        return anonymizers.combine_shared_state(self.method, self.params, [r.stats for r in accepted.values()])

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        pids = self.begin_round(server_round)
        shared = self._shared_state(grid, pids)
        return self.send(self.request("release", server_round, arrays={"shared": shared} if shared else {}), pids)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        releases = self.accept_releases(replies, server_round)
        for rel in releases:
            out = self.outcomes[rel.partition_id]
            out.metrics, out.timings = rel.metrics, rel.timings
        if not sum(len(r.y_train) for r in releases):  # e.g. every point DBSCAN noise: no model
            log.warning("%s: the releases are empty; no classifier can be trained", self.label)
            return None, None
        X = np.concatenate([r.x_train for r in releases])
        y = np.concatenate([r.y_train for r in releases])
        for name, params in self.scenario.classifiers.items():
            t0 = time.perf_counter()
            self.fitted[name] = classifiers.create(name, **params).fit(X, y)
            self.fit_s[name] = time.perf_counter() - t0
        if self.mode == "server":
            t0 = time.perf_counter()
            self.scores = score_on_server(self.fitted, {r.partition_id: (r.x_query_domains, r.y_query)
                                                        for r in releases})
            self.t_evaluate = time.perf_counter() - t0
        return None, self.metrics({"n_released": len(y), "n_clients": len(releases)})
