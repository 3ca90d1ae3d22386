"""``fed_ncm`` and ``fed_ridge``: clients share sufficient statistics instead of records.

Round: the round's participants send their statistics (``train.sums``: per-class sums and
counts, or X^T X, X^T Y and counts; fedsim.protocol.SumsReply) -> the server sums them and
fits ONE model (fedsim.classifiers.federated: the NCM / the closed-form ridge of the pooled
records) -> the model goes to the clients, which score their own queries (``evaluate.release``).
Evaluation is always client-side: the server never receives a query, and with random
features it could not map one.  Parameters come from ``[aggregates.<name>]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from fedsim.classifiers.federated import AGGREGATES
from fedsim.classifiers.sufficient import sum_statistics
from fedsim.config import Scenario
from fedsim.labels import config_label
from fedsim.protocol import SumsReply
from fedsim.strategies.release import OneShotStrategy

log = logging.getLogger(__name__)


class AggregateStrategy(OneShotStrategy):
    """One aggregate-sharing method (``name``, set by each subclass)."""

    name = ""
    evaluation = "client"

    @classmethod
    def plan(cls, scenario: Scenario) -> list[tuple[str, dict[str, Any], str, dict[str, Any]]]:
        params = dict(scenario.aggregates.get(cls.name, {}))
        return [(cls.name, params, config_label(cls.name, params), {})]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aggregate = AGGREGATES.create(self.method, **self.params)  # the server's: no key
        self.info: dict[str, Any] = {}

    def anonymizer(self) -> None:
        return None  # no records leave the clients

    def classifier_names(self) -> list[str]:
        return [self.aggregate.classifier]

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        pids = self.begin_round(server_round)
        return self.send(self.request("sums", server_round), pids)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        names = self.aggregate.statistic_names()

        def check(reply: SumsReply) -> None:
            reply.validate(self.limits, names)

        ok = self.accept_round(replies, server_round, "sums", SumsReply.dim, check)
        for reply in ok:
            self.outcomes[reply.partition_id].timings = reply.timings
        t0 = time.perf_counter()
        model, self.info = self.aggregate.fit(sum_statistics(r.stats for r in ok))
        self.fitted = {self.aggregate.classifier: model}
        self.fit_s = {self.aggregate.classifier: time.perf_counter() - t0}
        log.info("%s: %s from the statistics of %d clients (%s)", self.label, self.aggregate.classifier, len(ok),
                 ", ".join(f"{k}={v}" for k, v in self.info.items() if not isinstance(v, dict)))
        return None, self.metrics({"n_clients": len(ok), "n_records": self.info["n_records"]})

    def result(self) -> dict[str, Any]:
        return {**super().result(), "aggregate": self.info}


class FedNCMStrategy(AggregateStrategy):
    name = "fed_ncm"


class FedRidgeStrategy(AggregateStrategy):
    name = "fed_ridge"
