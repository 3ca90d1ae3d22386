"""Server-side classifiers trained on what clients release, by name.

Common API: ``fit``, ``partial_fit``, ``predict``, ``predict_proba``, ``score``.
"""

from __future__ import annotations

from typing import Any

from fedsim.classifiers.knn import KNNClassifier
from fedsim.registry import Registry

REGISTRY: Registry[Any] = Registry("classifier")
REGISTRY.register("knn")(KNNClassifier)


def create(name: str, **params: Any) -> Any:
    return REGISTRY.create(name, **params)


def validate(name: str, params: dict[str, Any]) -> None:
    create(name, **params)


__all__ = ["KNNClassifier", "REGISTRY", "create", "validate"]
