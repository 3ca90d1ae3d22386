"""k-nearest-neighbour classifier as a chunked matrix product + top-k in torch.

Never builds a full query x database distance matrix: queries are processed in chunks
sized so one chunk of scores stays under ``max_chunk_bytes``.
"""

from __future__ import annotations

import numpy as np
import torch

from fedsim.device import best_device

METRICS = ("cosine", "euclidean")
WEIGHTS = ("uniform", "distance")


class KNNClassifier:
    def __init__(
        self,
        k: int = 5,
        metric: str = "cosine",
        weights: str = "uniform",
        device: str = "auto",
        max_chunk_bytes: int = 256 * 2**20,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
        self.k = k
        self.metric = metric
        self.weights = weights
        self.device = device
        self.max_chunk_bytes = int(max_chunk_bytes)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray) -> "KNNClassifier":
        for attr in ("X_", "y_", "classes_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(X, y)

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> "KNNClassifier":
        """Add samples to the database (kNN learns by remembering)."""
        X = np.require(X, np.float32, ["C", "W"])  # torch.from_numpy needs writable memory
        y = np.require(y, np.int64, ["C", "W"])
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise ValueError(f"expected X (n, d) and y (n,), got {X.shape} and {y.shape}")
        dev = best_device(self.device)
        Xt = self._prepare(torch.from_numpy(X).to(dev))
        yt = torch.from_numpy(y).to(dev)
        if hasattr(self, "X_"):
            if Xt.shape[1] != self.X_.shape[1]:
                raise ValueError(f"X has {Xt.shape[1]} features, the classifier was fitted with {self.X_.shape[1]}")
            Xt, yt = torch.cat([self.X_, Xt]), torch.cat([self.y_, yt])
        self.X_, self.y_ = Xt, yt
        self.classes_ = np.unique(yt.cpu().numpy())
        self._sqnorm = (Xt * Xt).sum(1) if self.metric == "euclidean" else None
        return self

    def get_state(self) -> dict[str, np.ndarray]:
        """What a client needs to predict with this model (the stored database)."""
        self._check_fitted()
        return {"X": self.X_.cpu().numpy(), "y": self.y_.cpu().numpy()}

    def set_state(self, state: dict[str, np.ndarray]) -> "KNNClassifier":
        return self.fit(state["X"], state["y"])  # cosine normalisation is idempotent

    def _prepare(self, X: torch.Tensor) -> torch.Tensor:
        if self.metric == "cosine":
            return torch.nn.functional.normalize(X, dim=1)
        return X

    # ---------------------------------------------------------------- inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "X_"):
            raise RuntimeError("KNNClassifier is not fitted; call fit(X, y) first")

    def kneighbors(self, Q: np.ndarray, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances (ascending) and database indices of the nearest neighbours, like scikit-learn."""
        d, i = self._kneighbors_t(Q, n_neighbors)
        return d.cpu().numpy(), i.cpu().numpy()

    def _kneighbors_t(self, Q: np.ndarray, n_neighbors: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_fitted()
        k = min(n_neighbors or self.k, self.X_.shape[0])
        Qt = self._prepare(torch.from_numpy(np.require(Q, np.float32, ["C", "W"])).to(self.X_.device))
        chunk = max(1, self.max_chunk_bytes // (4 * self.X_.shape[0]))
        dists, idxs = [], []
        with torch.inference_mode():
            for start in range(0, Qt.shape[0], chunk):
                q = Qt[start : start + chunk]
                sim = q @ self.X_.T
                if self.metric == "cosine":
                    top, idx = sim.topk(k, dim=1)
                    dist = (1.0 - top).clamp_min(0.0)
                else:
                    d2 = (q * q).sum(1, keepdim=True) - 2.0 * sim + self._sqnorm
                    neg, idx = (-d2).topk(k, dim=1)
                    dist = (-neg).clamp_min(0.0).sqrt()
                dists.append(dist)
                idxs.append(idx)
        return torch.cat(dists), torch.cat(idxs)

    def predict_proba(self, Q: np.ndarray) -> np.ndarray:
        dist, idx = self._kneighbors_t(Q, None)
        labels = self.y_[idx]
        if self.weights == "uniform":
            w = torch.ones_like(dist)
        else:
            exact = dist <= 0
            w = torch.where(exact.any(1, keepdim=True), exact.float(), 1.0 / dist.clamp_min(1e-12))
        cls = torch.from_numpy(self.classes_).to(labels.device)
        col = torch.searchsorted(cls, labels)
        votes = torch.zeros(labels.shape[0], len(cls), device=labels.device)
        votes.scatter_add_(1, col, w)
        return (votes / votes.sum(1, keepdim=True)).cpu().numpy()

    def predict(self, Q: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self.classes_[self.predict_proba(Q).argmax(1)]

    def score(self, Q: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(Q) == np.asarray(y)).mean())
