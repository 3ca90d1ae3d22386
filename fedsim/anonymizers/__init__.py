"""Anonymizers: what a client shares instead of its embeddings.

Contract (scikit-learn style, numpy in and out)::

    anon = create("none", seed=0)      # parameters validated here
    anon.fit(X, y)                     # learn from the client's own data
    X_rel, y_rel = anon.release(X, y)  # the training release sent to the server
    Q_rel = anon.transform_queries(Q)  # how query embeddings are shared for scoring
"""

from __future__ import annotations

from typing import Any

from fedsim.anonymizers.base import Anonymizer, Identity
from fedsim.registry import Registry

REGISTRY: Registry[Anonymizer] = Registry("anonymizer")
REGISTRY.register("none")(Identity)


def create(name: str, seed: int = 0, **params: Any) -> Anonymizer:
    """Build (and thereby validate) an anonymizer by name."""
    return REGISTRY.create(name, seed=seed, **params)


def validate(name: str, params: dict[str, Any]) -> None:
    create(name, **params)


__all__ = ["Anonymizer", "REGISTRY", "create", "validate"]
