"""Fit every classifier on the pooled releases; combine the clients' own scores.

Evaluation is client-side: the server sends each fitted classifier's state to the clients,
which score their own (transformed) query embeddings and return only counts.  Query
embeddings therefore never leave a client -- not even for aggregating anonymizers, whose
queries pass through unchanged.
"""

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
    """One client's training release as the server sees it (already anonymized by the client)."""

    partition_id: int
    x_train: np.ndarray
    y_train: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the client's own privacy/utility measures


def fit_pooled(releases: list[ClientRelease], classifier_params: dict[str, dict[str, Any]]
               ) -> tuple[dict[str, Any], dict[str, float]]:
    """Every classifier fitted on all releases together; and the fit seconds of each."""
    X = np.concatenate([r.x_train for r in releases])
    y = np.concatenate([r.y_train for r in releases])
    fitted, seconds = {}, {}
    for name, params in classifier_params.items():
        t0 = time.perf_counter()
        fitted[name] = classifiers.create(name, **params).fit(X, y)
        seconds[name] = time.perf_counter() - t0
    return fitted, seconds


def score_locally(states: dict[str, dict[str, np.ndarray]], classifier_params: dict[str, dict[str, Any]],
                  queries: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """Client side: rebuild each classifier from its state and count correct predictions."""
    correct = {}
    for name, state in states.items():
        clf = classifiers.create(name, **classifier_params[name]).set_state(state)
        correct[name] = int((clf.predict(queries) == labels).sum()) if len(labels) else 0
    return correct


def combine_scores(scores: dict[int, dict[str, Any]], names: list[str]
                   ) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """Global accuracy (all queries pooled, i.e. sample-weighted) and per-client accuracy
    from each client's ``{"n": n_queries, "correct": {name: count}}``."""
    per_client = {pid: {n: s["correct"][n] / s["n"] for n in names} if s["n"] else {} for pid, s in scores.items()}
    total = sum(s["n"] for s in scores.values())
    overall = {n: (sum(s["correct"][n] for s in scores.values()) / total) if total else float("nan") for n in names}
    return overall, per_client
