"""Server-side classifiers trained on what clients release, by name.

Common API (``base.Classifier``): ``fit``, ``partial_fit``, ``predict``, ``predict_proba``,
``score``, and ``get_state``/``set_state`` to ship a fitted classifier to the clients.

* ``knn`` -- k nearest neighbours, optionally a bounded class-balanced memory;
* ``ncm`` -- nearest class mean (exact running means);
* ``knn_ncm`` -- kNN votes and NCM probabilities mixed by ``alpha``;
* ``fc`` -- linear or one-hidden-layer head trained with cross-entropy;
* ``ridge`` -- closed-form one-hot ridge regression (Fed3R's classifier).

``from_statistics`` builds ``ncm`` and ``ridge`` from sufficient statistics
(``sufficient``), the models of the aggregate-sharing methods (``federated.AGGREGATES``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsim.classifiers.base import Classifier
from fedsim.classifiers.fc import FCClassifier
from fedsim.classifiers.knn import KNNClassifier
from fedsim.classifiers.knn_ncm import KNNNCMClassifier
from fedsim.classifiers.ncm import NCMClassifier
from fedsim.classifiers.ridge import RidgeClassifier
from fedsim.registry import Registry

REGISTRY: Registry[Classifier] = Registry("classifier")
REGISTRY.register("knn")(KNNClassifier)
REGISTRY.register("ncm")(NCMClassifier)
REGISTRY.register("knn_ncm")(KNNNCMClassifier)
REGISTRY.register("fc")(FCClassifier)
REGISTRY.register("ridge")(RidgeClassifier)


def create(name: str, **params: Any) -> Classifier:
    """Build a classifier by name; unknown names and parameters are ValueErrors."""
    return REGISTRY.create(name, **params)


def validate(name: str, params: dict[str, Any]) -> None:
    create(name, **params)


def count_correct(clf: Classifier, queries: list[np.ndarray], labels: np.ndarray) -> list[int]:
    """Correct predictions of ``clf`` on each query matrix (one per test domain) -- how both
    the server (on transformed queries) and a client (on its own) score a model."""
    return [int((clf.predict(q) == labels).sum()) if len(labels) else 0 for q in queries]


__all__ = ["Classifier", "FCClassifier", "KNNClassifier", "KNNNCMClassifier", "NCMClassifier",
           "REGISTRY", "RidgeClassifier", "count_correct", "create", "validate"]
