"""Sufficient statistics: what a client shares when it shares aggregates instead of records.

* NCM (FedNCM, Legate et al., 2023): per-class sums and counts; their sum over clients gives
  the class means of the pooled records.
* ridge (Fed3R, Fanì et al., 2024): ``gram = X^T X``, ``xty = X^T Y`` (Y one-hot) and the
  class counts; their sum over clients gives the closed-form ridge of the pooled records,
  whatever the clients' label skew.

Sums are float64 (counts int64), computed in chunks, so neither the split of the records
over clients nor their order changes them beyond float64 rounding (~1e-16 relative).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

CHUNK = 8192


def _chunks(X: np.ndarray, y: np.ndarray, transform: Callable[[np.ndarray], np.ndarray] | None
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(float64 rows, labels) a chunk at a time: bounded memory, also through a feature map."""
    for start in range(0, len(y), CHUNK):
        x = np.asarray(X[start:start + CHUNK], np.float64)
        yield (transform(x) if transform is not None else x), y[start:start + CHUNK]


def _labels(X: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    y = np.asarray(y, np.int64)
    if np.ndim(X) != 2 or y.shape != (len(X),):
        raise ValueError(f"expected X (n, d) and y (n,), got {np.shape(X)} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes - 1}], got [{y.min()}, {y.max()}]")
    return y


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float64)[labels]


def ncm_statistics(X: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """``sums`` (C, d) float64 and ``counts`` (C,) int64 of the records of each class."""
    y = _labels(X, y, num_classes)
    sums = np.zeros((num_classes, np.shape(X)[1]), np.float64)
    for x, labels in _chunks(X, y, None):
        sums += _one_hot(labels, num_classes).T @ x
    return {"sums": sums, "counts": np.bincount(y, minlength=num_classes).astype(np.int64)}


def ridge_statistics(X: np.ndarray, y: np.ndarray, num_classes: int,
                     transform: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``gram`` (d, d) = X^T X, ``xty`` (d, C) = X^T Y with one-hot Y, ``counts`` (C,), all
    after ``transform`` (a feature map, applied a chunk at a time) when one is given."""
    y = _labels(X, y, num_classes)
    gram = xty = None
    for x, labels in _chunks(X, y, transform):
        if gram is None:
            gram = np.zeros((x.shape[1], x.shape[1]), np.float64)
            xty = np.zeros((x.shape[1], num_classes), np.float64)
        gram += x.T @ x
        xty += x.T @ _one_hot(labels, num_classes)
    if gram is None:  # no records: the dimension comes from the map (or X itself)
        d = transform(np.zeros((0, np.shape(X)[1]))).shape[1] if transform is not None else np.shape(X)[1]
        gram, xty = np.zeros((d, d)), np.zeros((d, num_classes))
    gram = (gram + gram.T) / 2  # exactly symmetric (BLAS may differ in the last bit)
    return {"gram": gram, "xty": xty, "counts": np.bincount(y, minlength=num_classes).astype(np.int64)}


def sum_statistics(parts: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The element-wise sum of several clients' statistics (the same names and shapes)."""
    parts = list(parts)
    if not parts:
        raise ValueError("sum_statistics needs at least one set of statistics")
    names = set(parts[0])
    for p in parts[1:]:
        if set(p) != names:
            raise ValueError(f"statistics differ: {sorted(names)} and {sorted(p)}")
    return {k: np.sum([p[k] for p in parts], axis=0, dtype=parts[0][k].dtype) for k in parts[0]}
