"""Sufficient statistics: what a client shares when it shares aggregates instead of records.

* NCM (FedNCM, Legate et al., 2023): per-class sums and counts; their sum over clients gives
  the class means of the pooled records.
* ridge (Fed3R, Fanì et al., 2024): ``gram = X^T X``, ``xty = X^T Y`` (Y one-hot) and the
  class counts; their sum over clients gives the closed-form ridge of the pooled records,
  whatever the clients' label skew.

Sums are float64 (counts int64), computed in chunks, so neither the split of the records
over clients nor their order changes them beyond float64 rounding (~1e-16 relative).

:func:`gaussian_noise` makes a client's statistics differentially private (the Gaussian
mechanism on statistics of norm-bounded records, counts left exact: labels are public, as
with ``dp_gaussian`` releases).
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


def ncm_statistics(X: np.ndarray, y: np.ndarray, num_classes: int,
                   transform: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``sums`` (C, d) float64 and ``counts`` (C,) int64 of the records of each class (after
    ``transform``, applied a chunk at a time, when one is given)."""
    y = _labels(X, y, num_classes)
    sums = np.zeros((num_classes, np.shape(X)[1]), np.float64)
    for x, labels in _chunks(X, y, transform):
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


#: one entry of a client's statistic scales with (feature norm)^p, p by statistic
NORM_POWER = {"counts": 0, "sums": 1, "xty": 1, "gram": 2}


def clip_rows(X: np.ndarray, norm: float) -> np.ndarray:
    """Each row scaled down to L2 norm <= ``norm`` (rows already inside are unchanged)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X * np.minimum(1.0, norm / np.maximum(norms, 1e-300))


def gaussian_noise(stats: dict[str, np.ndarray], sigma: float, norm: float, rng: np.random.Generator
                   ) -> dict[str, np.ndarray]:
    """``stats`` + N(0, (sigma * norm ** p)^2) on every entry of every statistic but the
    counts (p: :data:`NORM_POWER` of its name, ``prefix.name`` allowed), in name order.

    ``sigma`` is the noise multiplier times the statistics' L2 sensitivity in units of the
    records' norm bound ``norm``.  A Gram matrix gets symmetric noise (its upper triangle
    drawn, mirrored: the released upper triangle is what the sensitivity bounds) and its
    diagonal is then floored at 0 -- post-processing, so the guarantee is unchanged."""
    out = {}
    for name in sorted(stats):
        value, base = stats[name], name.rsplit(".", 1)[-1]
        if base == "counts":
            out[name] = value
            continue
        noise = rng.standard_normal(value.shape) * (sigma * norm ** NORM_POWER[base])
        if base == "gram":
            upper = np.triu(noise)
            noise = upper + np.triu(upper, 1).T
            value = value + noise
            np.fill_diagonal(value, np.maximum(np.diag(value), 0.0))
            out[name] = value
        else:
            out[name] = value + noise
    return out
