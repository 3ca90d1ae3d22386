"""Fit every classifier on the pooled releases and score each client's queries."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedsim import classifiers

log = logging.getLogger(__name__)


@dataclass
class ClientRelease:
    """One client's reply as the server sees it (already anonymized by the client)."""

    partition_id: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def evaluate_pooled(
    releases: list[ClientRelease], classifier_params: dict[str, dict[str, Any]]
) -> tuple[dict[str, float], dict[int, dict[str, float]], dict[str, dict[str, float]]]:
    """Global accuracy per classifier, per-client accuracy, and fit/predict seconds.

    Global accuracy pools every client's queries (a sample-weighted mean of clients).
    """
    X = np.concatenate([r.x_train for r in releases])
    y = np.concatenate([r.y_train for r in releases])
    overall: dict[str, float] = {}
    per_client: dict[int, dict[str, float]] = {r.partition_id: {} for r in releases}
    timings: dict[str, dict[str, float]] = {}
    for name, params in classifier_params.items():
        t0 = time.perf_counter()
        clf = classifiers.create(name, **params).fit(X, y)
        t_fit = time.perf_counter() - t0
        correct = total = 0
        t0 = time.perf_counter()
        for r in releases:
            if len(r.y_query) == 0:
                continue
            hits = int((clf.predict(r.x_query) == r.y_query).sum())
            per_client[r.partition_id][name] = hits / len(r.y_query)
            correct, total = correct + hits, total + len(r.y_query)
        overall[name] = correct / total if total else float("nan")
        timings[name] = {"fit_s": t_fit, "predict_s": time.perf_counter() - t0}
        log.info("%s: global accuracy %.4f on %d queries from %d clients", name, overall[name], total, len(releases))
    return overall, per_client, timings
