"""The client's side of the aggregate flows (fed_ncm, fed_ridge): sufficient statistics of
its training embeddings -- the same embeddings releases use -- and its queries in the
model's input space, which stay on the client for client-side evaluation.

The held-out share (fed_ridge, ``lam = "auto"``) is drawn from (scenario seed, partition id),
the random-features map from the federation key (a client-side secret).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fedsim.classifiers import Classifier
from fedsim.classifiers.federated import AGGREGATES, AggregateMethod
from fedsim.clients.keys import KEY_ENV, NODE_KEY
from fedsim.clients.release import ClientData
from fedsim.config import Scenario
from fedsim.protocol import SecureEncoding
from fedsim.seeding import derive_seed


def is_aggregate(method: str) -> bool:
    return method in AGGREGATES


def aggregate_method(method: str, params: dict[str, Any], key: int | None = None) -> AggregateMethod:
    agg = AGGREGATES.create(method, key=key, **params)
    if agg.needs_key and key is None:
        raise ValueError(f"{method} with these parameters needs the federation key, and this client has none: give "
                         f"the SuperNode --node-config \"{NODE_KEY}='/path/to/key'\" or set ${KEY_ENV}")
    return agg


def statistics(scenario: Scenario, data: ClientData, method: str, params: dict[str, Any], key: int | None
               ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """(the statistics to send, the queries to keep, timings)."""
    t0 = time.perf_counter()
    stats, queries = aggregate_method(method, params, key).client_statistics(
        data.x_train, data.y_train, data.x_query, len(data.label_histogram),
        seed=derive_seed(scenario.seed, "held-out", data.partition_id))
    return stats, queries, {"statistics_s": time.perf_counter() - t0, "extract_s": data.timings["extract_s"]}


def secure_statistics(scenario: Scenario, data: ClientData, method: str, params: dict[str, Any], key: int | None
                      ) -> tuple[list[np.ndarray], np.ndarray, dict[str, float]]:
    """(the statistics scaled for SecAgg+ -- fedsim.protocol.SecureEncoding, from the
    scenario's public bounds --, the queries to keep, timings)."""
    stats, queries, timings = statistics(scenario, data, method, params, key)
    encoding = SecureEncoding.create(aggregate_method(method, params, key), scenario.federation.secure_aggregation)
    return encoding.encode(stats), queries, timings


def model(method: str, params: dict[str, Any]) -> Classifier:
    """An unfitted model of the flow, to restore the state the server shipped into."""
    return AGGREGATES.create(method, **params).model()
