"""Closed-form ridge regression on one-hot targets, predicted by argmax (Fed3R's classifier).

``W = (X^T X + lam I)^-1 X^T Y`` with no intercept, as in Fed3R: the model is a function
of the sufficient statistics ``X^T X`` and ``X^T Y`` alone, so :meth:`from_statistics` on
statistics summed over clients gives the ridge of the pooled records exactly (float64).
``partial_fit`` adds a batch's statistics and solves again: a stream ends at the same W as
one ``fit``.  ``predict_proba`` is the softmax of the scores (monotone in them, not
calibrated).  The shipped state is W alone: a restored model predicts, it cannot learn more.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedsim.classifiers.base import Classifier, check_number
from fedsim.classifiers.sufficient import ridge_statistics


class RidgeClassifier(Classifier):
    """``lam`` (> 0) is the ridge penalty, in the units of ``X^T X`` (it grows with n and the
    embeddings' scale; ``fed_ridge``'s ``lam = "auto"`` picks it on held-out records)."""

    def __init__(self, lam: float = 1.0, device: str = "auto") -> None:
        super().__init__(device)
        self.lam = check_number("lam", lam, 0.0, low_open=True)

    @classmethod
    def from_statistics(cls, stats: dict[str, np.ndarray], **params: Any) -> "RidgeClassifier":
        """The ridge of the records behind ``gram``/``xty``/``counts`` (ridge_statistics,
        possibly summed over clients); classes without records are left out, as in ``fit``."""
        clf = cls(**params)
        counts = np.asarray(stats["counts"], np.int64)
        seen = np.flatnonzero(counts)
        if not len(seen):
            raise ValueError("RidgeClassifier.from_statistics needs statistics of at least one record")
        clf.classes_, clf.class_count_ = seen.astype(np.int64), counts[seen]
        clf.gram_ = np.array(stats["gram"], np.float64)
        clf.xty_ = np.array(stats["xty"], np.float64)[:, seen]
        clf.n_features_in_ = clf.gram_.shape[0]
        clf._solve()
        return clf

    def _learn(self, X: np.ndarray, y: np.ndarray, previous: np.ndarray) -> None:
        if len(previous) and not hasattr(self, "gram_"):
            raise RuntimeError("a RidgeClassifier restored with set_state predicts only; fit it to learn")
        stats = ridge_statistics(X, np.searchsorted(self.classes_, y), len(self.classes_))
        if hasattr(self, "gram_"):
            stats["gram"] += self.gram_
            stats["xty"][:, np.searchsorted(self.classes_, previous)] += self.xty_
        self.gram_, self.xty_ = stats["gram"], stats["xty"]
        self._solve()

    def _solve(self) -> None:
        d = self.gram_.shape[0]
        coef = np.linalg.solve(self.gram_ + self.lam * np.eye(d), self.xty_)
        self.coef_ = self._tensor(coef)

    def _decision(self, Q: np.ndarray) -> torch.Tensor:
        return self._tensor(Q).double() @ self.coef_

    def _proba(self, Q: np.ndarray) -> torch.Tensor:
        return torch.softmax(self._decision(Q), dim=1)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef_.cpu().numpy()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.coef_ = self._tensor(np.asarray(state["coef"], np.float64))
        self.n_features_in_ = self.coef_.shape[0]
