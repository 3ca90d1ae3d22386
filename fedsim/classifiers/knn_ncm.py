"""kNN and nearest class mean, mixed: local evidence from neighbours, global from class means.

``predict_proba = alpha * kNN vote distribution + (1 - alpha) * NCM softmax distribution``,
columns aligned on the labels.  The NCM part always reflects every sample seen (running
means); the kNN part only its memory, which ``memory_size`` may bound -- so a bounded kNN
keeps the exact class means of all the data.  ``alpha=1`` is plain kNN, ``alpha=0`` plain
NCM.  (The study's "kNN-NCM" took a majority vote over the k nearest class means; each mean
has its own label, so the vote always tied and returned the smallest class among them.)
"""

from __future__ import annotations

import numpy as np
import torch

from fedsim.classifiers.base import Classifier, check_int, check_number
from fedsim.classifiers.knn import KNNClassifier
from fedsim.classifiers.ncm import NCMClassifier


class KNNNCMClassifier(Classifier):
    """``alpha`` weighs the kNN votes against the NCM probabilities (``temperature``)."""

    state_holds_records = True

    def __init__(
        self,
        k: int = 5,
        metric: str = "cosine",
        weights: str = "uniform",
        memory_size: int | None = None,
        precision: str = "auto",
        alpha: float = 0.5,
        temperature: float = 0.1,
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(device)
        self.k, self.metric, self.weights = k, metric, weights
        self.memory_size, self.precision = memory_size, precision
        self.alpha = check_number("alpha", alpha, 0.0, 1.0)
        self.temperature = temperature
        self.seed = check_int("seed", seed, 0)
        self._parts()  # the parts check their own parameters

    def _parts(self) -> tuple[KNNClassifier, NCMClassifier]:
        knn = KNNClassifier(k=self.k, metric=self.metric, weights=self.weights, memory_size=self.memory_size,
                            precision=self.precision, device=self.device, seed=self.seed)
        return knn, NCMClassifier(metric=self.metric, temperature=self.temperature, device=self.device)

    def _learn(self, X: np.ndarray, y: np.ndarray, previous: np.ndarray) -> None:
        if not hasattr(self, "knn_"):
            self.knn_, self.ncm_ = self._parts()
        self.knn_.partial_fit(X, y)
        self.ncm_.partial_fit(X, y)

    def _proba(self, Q: np.ndarray) -> torch.Tensor:
        out = torch.zeros(len(Q), len(self.classes_), device=self._torch_device())
        for part, weight in ((self.knn_, self.alpha), (self.ncm_, 1.0 - self.alpha)):
            cols = self._class_index(part.classes_)
            out.index_add_(1, cols, weight * part._proba(Q).float())
        return out

    def _get_state(self) -> dict[str, np.ndarray]:
        return {f"{name}.{key}": value for name, part in (("knn", self.knn_), ("ncm", self.ncm_))
                for key, value in part.get_state().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.knn_, self.ncm_ = self._parts()
        for name, part in (("knn", self.knn_), ("ncm", self.ncm_)):
            prefix = f"{name}."
            part.set_state({key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)})
        self.n_features_in_ = self.ncm_.n_features_in_
