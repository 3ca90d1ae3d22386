"""Base class of all anonymizers and the identity method ``none``."""

from __future__ import annotations

import numpy as np


def check_xy(X: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (n, d), got shape {X.shape}")
    if y is not None:
        y = np.asarray(y, dtype=np.int64)
        if y.shape != (X.shape[0],):
            raise ValueError(f"labels must have shape ({X.shape[0]},), got {y.shape}")
    return X, y


class Anonymizer:
    """Parameters in ``__init__`` (validated there), learned state with a trailing underscore."""

    #: True when the release reveals the original vectors (only ``none``).
    reveals_originals = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Anonymizer":
        X, y = check_xy(X, y)
        self.n_features_in_ = X.shape[1]
        return self

    def release(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def transform_queries(self, Q: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}


class Identity(Anonymizer):
    """``none``: shares the embeddings unchanged; the utility reference for every method."""

    reveals_originals = True

    def release(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, y = check_xy(X, y)
        return X.copy(), y.copy()

    def transform_queries(self, Q: np.ndarray) -> np.ndarray:
        return check_xy(Q)[0].copy()
