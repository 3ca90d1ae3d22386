"""The original study's release metrics, made well-defined, plus a near-duplicate check.

These compare the release with the originals in raw coordinates. They are kept for
comparison with the study, but they are NOT privacy measures on their own: a column
permutation scores overlap 0, near_overlap 0, a large reconstruction error and
projection_robustness 0 — "private" and "useful" — while re-identification links every
record (see ``linkage``). Read them next to the attack metrics.

* ``overlap`` = |{j : r_j equals some x_i exactly}| / m. Rows are compared as bytes in
  their common float dtype (at least float32) after adding 0.0 (so −0.0 == 0.0), through
  a hash table of the originals' rows with an exact equality check on hash hits; O(n + m),
  all rows, no sampling. The study reported the *count* of shared tuples; a fraction is
  comparable across release sizes. 0.0 when d' != d (no released row can equal an original).
* ``near_overlap`` = |{j ∈ J : min_i |r_j − x_i| ≤ τ}| / |J| with τ = 0.1 × median_i
  min_{i'≠i} |x_i − x_i'| (the originals' own median nearest-neighbour distance, so the
  threshold is scale-free: a released row closer to an original than a tenth of the typical
  gap between originals is a near-copy). J and the originals whose nearest-neighbour
  distance enters the median are seeded samples of at most ``max_samples`` rows; the
  search itself runs against all originals. Catches tiny noise that exact overlap misses.
  NaN when d' != d.
* ``reconstruction_error`` = mean_{j ∈ J} mean_{i ∈ S(j)} (1/d) |r_j − x_i|² over a
  seeded sample J (≤ ``max_samples``) of released rows with a source S(j) (S(j) = {j}
  for per-record methods; the group behind an aggregated row, so it includes the spread
  the aggregation hides), computed exactly without expanding rows × members as
  (|r_j − μ_S(j)|² + mean_{i∈S(j)} |x_i − μ_S(j)|²) / d. This is the study's element-wise
  MSE, row-aligned. For additive
  noise it equals the noise variance (σ² Gaussian, 2b² Laplace) by construction, whatever
  the data; for a permutation or rotation it is large although nothing is hidden. NaN when
  d' != d: coordinates do not correspond, and the attacker's best reconstruction error is
  ``inversion_mse``. NaN also when no row has a source.
* ``projection_robustness`` = |D(X_S) − D(R_J)|, D = mean Euclidean distance over pairs of
  distinct rows. Per-record methods: the same seeded sample of row indices (≤
  ``max_samples``) on both sides (the study used the first 10k rows, biased for sorted
  data). Aggregating methods: a sample of the released rows against a sample of the
  originals that contributed to the release. A utility proxy (preserved global geometry),
  blind to rotations and permutations (0 for both) and to neighbourhood structure.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fedsim.privacy.geometry import knn, mean_pairwise_distance
from fedsim.privacy.pairs import Pairs

NEAR_FACTOR = 0.1


def _sample(idx: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) <= max_samples:
        return idx
    return np.sort(rng.choice(idx, size=max_samples, replace=False))


def _row_keys(A: np.ndarray, dtype: np.dtype) -> np.ndarray:
    A = np.ascontiguousarray(np.asarray(A, dtype=dtype) + dtype.type(0.0))
    return A.view(np.dtype((np.void, A.dtype.itemsize * A.shape[1]))).ravel()


def overlap(X: np.ndarray, X_rel: np.ndarray) -> float:
    """Fraction of released rows that are an exact copy of some original row."""
    if X_rel.shape[0] == 0:
        return math.nan
    if X_rel.shape[1] != X.shape[1]:
        return 0.0
    dtype = np.dtype(np.result_type(X.dtype, X_rel.dtype, np.float32))
    table: dict[int, list[int]] = {}
    keys_x = _row_keys(X, dtype)
    for i, key in enumerate(keys_x):
        table.setdefault(hash(key.tobytes()), []).append(i)
    hits = 0
    for key in _row_keys(X_rel, dtype):
        raw = key.tobytes()
        if any(keys_x[i].tobytes() == raw for i in table.get(hash(raw), ())):
            hits += 1
    return hits / X_rel.shape[0]


def near_threshold(X: np.ndarray, max_samples: int, rng: np.random.Generator, device: torch.device) -> float:
    """τ = NEAR_FACTOR × median nearest-neighbour distance among the originals."""
    if X.shape[0] < 2:
        return math.nan
    probe = _sample(np.arange(X.shape[0]), max_samples, rng)
    dist, _ = knn(X[probe], X, 1, device, exclude=probe)
    return NEAR_FACTOR * float(np.median(dist[:, 0]))


def near_overlap(X: np.ndarray, X_rel: np.ndarray, max_samples: int, rng: np.random.Generator,
                 device: torch.device) -> float:
    """Fraction of (sampled) released rows within τ of their nearest original."""
    if X_rel.shape[1] != X.shape[1] or X_rel.shape[0] == 0:
        return math.nan
    tau = near_threshold(X, max_samples, rng, device)
    if math.isnan(tau):
        return math.nan
    rows = _sample(np.arange(X_rel.shape[0]), max_samples, rng)
    dist, _ = knn(X_rel[rows], X, 1, device)
    return float((dist[:, 0] <= tau).mean())


def reconstruction_error(X: np.ndarray, X_rel: np.ndarray, pairs: Pairs, max_samples: int,
                         rng: np.random.Generator) -> float:
    """Row-aligned element-wise MSE between released rows and their sources (see module doc)."""
    if X_rel.shape[1] != X.shape[1]:
        return math.nan
    rows = _sample(pairs.sourced, max_samples, rng)
    if len(rows) == 0:
        return math.nan
    gids, inverse = np.unique(pairs.row_group[rows], return_inverse=True)
    means, spread = pairs.group_stats(X, gids)
    diff = np.asarray(X_rel[rows], dtype=np.float64) - means[inverse]
    return float((((diff * diff).sum(1) + spread[inverse]) / X.shape[1]).mean())


def projection_robustness(X: np.ndarray, X_rel: np.ndarray, pairs: Pairs, max_samples: int,
                          rng: np.random.Generator, device: torch.device) -> float:
    """|mean pairwise distance of originals − mean pairwise distance of the release|."""
    if X_rel.shape[0] < 2:
        return math.nan
    if not pairs.aggregating and X_rel.shape[0] == X.shape[0]:
        rows = _sample(np.arange(X.shape[0]), max_samples, rng)
        originals, released = X[rows], X_rel[rows]
    else:
        originals = X[_sample(pairs.member_set(), max_samples, rng)]
        released = X_rel[_sample(np.arange(X_rel.shape[0]), max_samples, rng)]
    return abs(mean_pairwise_distance(originals, device) - mean_pairwise_distance(released, device))
