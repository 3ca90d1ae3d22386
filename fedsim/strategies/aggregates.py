"""``fed_ncm`` and ``fed_ridge``: clients share sufficient statistics instead of records.

Round: the round's participants send their statistics (``train.sums``: per-class sums and
counts, or X^T X, X^T Y and counts; fedsim.protocol.SumsReply) -> the server sums them and
fits ONE model (fedsim.classifiers.federated: the NCM / the closed-form ridge of the pooled
records) -> the model goes to the clients, which score their own queries (``evaluate.release``).
Evaluation is always client-side: the server never receives a query, and with random
features it could not map one.  Parameters come from ``[aggregates.<name>]``.

With ``[federation.secure_aggregation] enabled = true`` the statistics go through Flower's
SecAgg+ instead (fedsim.strategies.secure): ``configure_train`` runs the protocol itself
and sends no ``train.sums``, and ``aggregate_train`` fits from the unmasked sum.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from fedsim.classifiers.federated import AGGREGATES
from fedsim.classifiers.sufficient import sum_statistics
from fedsim.config import Scenario, sweep
from fedsim.labels import config_label
from fedsim.protocol import SecureEncoding, SumsReply
from fedsim.strategies.base import ClientOutcome
from fedsim.strategies.federation import FederationError
from fedsim.strategies.release import OneShotStrategy
from fedsim.strategies.secure import SecureRound, secure_sum

log = logging.getLogger(__name__)


class AggregateStrategy(OneShotStrategy):
    """One aggregate-sharing method (``name``, set by each subclass)."""

    name = ""
    evaluation = "client"

    @classmethod
    def plan(cls, scenario: Scenario) -> list[tuple[str, dict[str, Any], str, dict[str, Any]]]:
        params = scenario.aggregates.get(cls.name, {})
        return [(cls.name, p, config_label(cls.name, p), {}) for p in sweep(params, AGGREGATES.get(cls.name).list_valued)]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aggregate = AGGREGATES.create(self.method, **self.params)  # the server's: no key
        self.info: dict[str, Any] = {}
        secure = self.scenario.federation.secure_aggregation
        self.encoding = SecureEncoding.create(self.aggregate, secure) if secure.enabled else None
        self.secure_round: SecureRound | None = None
        self.secure_info: dict[str, Any] = {}

    def anonymizer(self) -> None:
        return None  # no records leave the clients

    def classifier_names(self) -> list[str]:
        return [self.aggregate.classifier]

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        pids = self.begin_round(server_round)
        request = self.request("sums", server_round)
        if self.encoding is None:
            return self.send(request, pids)
        # SecAgg+ cannot leave a contribution out after the fact: simulated stragglers are not asked
        nodes = self.fed.select([p for p in pids if p not in self.late()] if pids is not None else None)
        self._t_sent = time.perf_counter()
        with grid.scope(index=self.index, round=server_round - 1):
            self.secure_round = secure_sum(grid, nodes, request.config(), self.scenario.federation.secure_aggregation,
                                           self.fed.timeout)
        return []

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if self.encoding is None:
            total, n_clients = self._sums(replies, server_round)
        else:
            total, n_clients = self._secure_sum(server_round)
        t0 = time.perf_counter()
        model, self.info = self.aggregate.fit(total)
        self.fitted = {self.aggregate.classifier: model}
        self.fit_s = {self.aggregate.classifier: time.perf_counter() - t0}
        log.info("%s: %s from the statistics of %d clients (%s)", self.label, self.aggregate.classifier, n_clients,
                 ", ".join(f"{k}={v}" for k, v in self.info.items() if not isinstance(v, dict)))
        return None, self.metrics({"n_clients": n_clients, "n_records": self.info["n_records"]})

    def _sums(self, replies: Iterable[Message], server_round: int) -> tuple[dict[str, np.ndarray], int]:
        """The sum of the validated ``train.sums`` replies."""
        names = self.aggregate.statistic_names()

        def check(reply: SumsReply) -> None:
            reply.validate(self.limits, names)

        ok = self.accept_round(replies, server_round, "sums", SumsReply.dim, check)
        for reply in ok:
            self.outcomes[reply.partition_id].timings = reply.timings
        return sum_statistics(r.stats for r in ok), len(ok)

    def _secure_sum(self, server_round: int) -> tuple[dict[str, np.ndarray], int]:
        """The sum SecAgg+ unmasked; clients that dropped in any stage are failures. The
        server learns no client's statistics, so the outcomes hold only the clear-text
        metrics (n_train and the label histogram stay unknown: 0 and [])."""
        rnd, round_index = self.secure_round, server_round - 1
        self.t_collect += time.perf_counter() - self._t_sent
        failed_before = len(self.fed.failures)
        for node, reason in rnd.failed.items():
            self.fed.fail(node, "secure_sums", self.index, round_index, reason)
        self.fed.require_quorum(f"{self.label}: secure_sums round {server_round}")
        if rnd.mean is None:
            raise FederationError(f"{self.label}: SecAgg+ halted (too few clients left to rebuild the masks: "
                                  f"reconstruction_threshold = {rnd.reconstruction_threshold}); dropped: "
                                  f"{'; '.join(rnd.failed.values()) or 'none'}")
        for node, m in sorted(rnd.metrics.items()):
            try:
                pid = int(m["partition-id"])
                self.fed.check_partition(node, pid)
            except (KeyError, TypeError, ValueError) as err:  # a ProtocolError is a ValueError
                raise FederationError(f"{self.label}: a SecAgg+ survivor (node {node}) sent bad metrics: {err}") from None
            self.fed.pid_of.setdefault(node, pid)
            self.outcomes[pid] = ClientOutcome(pid, 0, int(m["n-query"]), int(m["num-classes"]), [],
                                               str(m["embedding-cache"]),
                                               timings={k: float(m[k]) for k in ("statistics_s", "extract_s")})
        survivors = sorted(self.outcomes)
        if self.round_plan is not None:
            self.took_part = survivors
            failed = [f["client"] for f in self.fed.failures[failed_before:]]
            self.participation.append(self.round_plan.record(survivors, failed))
        total = self.encoding.decode(rnd.mean, len(survivors))
        self.secure_info = {
            "num_shares": rnd.num_shares, "reconstruction_threshold": rnd.reconstruction_threshold,
            "clipping_range": self.encoding.clipping_range, "quantization_range": self.encoding.quantization_range,
            "scale": {n: self.encoding.scale(n) for n in self.encoding.names}, "survivors": survivors,
            "quantisation_error": self.encoding.error_bound(len(survivors))}
        return total, len(survivors)

    def result(self) -> dict[str, Any]:
        out = {**super().result(), "aggregate": self.info}
        if self.secure_info:
            out["secure_aggregation"] = self.secure_info
        return out


class FedNCMStrategy(AggregateStrategy):
    name = "fed_ncm"


class FedRidgeStrategy(AggregateStrategy):
    name = "fed_ridge"
