"""Column matching by quantiles: undoing a column permutation without known pairs.

A permutation moves whole columns, so each released column keeps its distribution. An
attacker holding a population from the same distribution (the originals themselves for
linkage; for membership inference and inversion a reference population, half of the
control set) summarises every column by its quantile profile q_c = (Q_c(ℓ))_{ℓ ∈ LEVELS}
and matches released column c to original column j by the Hungarian algorithm on the
cost mean_ℓ (q_c(ℓ) − q'_j(ℓ))² (``scipy.optimize.linear_sum_assignment``, d × d).

Marginals alone confuse columns with similar distributions (on cifar10-mini embeddings, a
reference of 125 rows gets 16% of 256 columns right). The columns' correlations break the
ties: the permutation moves the correlation matrix C of the release to P C Pᵀ, so given the
current matching, released column c's correlations with every other column, put in
original order, should equal those of its original column in the population. Each round
adds the (standardised) mean squared difference of these correlation profiles to the
quantile cost and solves the assignment again (seeded graph matching), until the matching
stops changing or after ``ROUNDS`` rounds (the 16% above become 99% in three rounds).

The released rows, put back in the matched column order, live in the original space: any
attack (nearest original, membership, inversion) then runs there. With the originals
themselves as population the profiles of matching columns are identical and the
permutation is recovered exactly, up to columns with identical distributions (whose swap
changes nothing). Cost O(d (n log n + d²)) per round.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

LEVELS = np.linspace(0.01, 0.99, 99)
ROUNDS = 8


def profiles(A: np.ndarray) -> np.ndarray:
    """(d, len(LEVELS)) quantile profile of every column."""
    return np.quantile(np.asarray(A, dtype=np.float64), LEVELS, axis=0).T


def correlations(A: np.ndarray) -> np.ndarray:
    """(d, d) Pearson correlations of the columns (0 for a constant column)."""
    A = np.asarray(A, dtype=np.float64)
    A = A - A.mean(0)
    norm = np.sqrt((A * A).sum(0))
    norm[norm == 0] = 1.0
    return (A.T @ A) / np.outer(norm, norm)


def msd(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(len(A), len(B)) mean squared differences between rows, without the 3-D difference."""
    sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    return np.maximum(sq, 0.0) / A.shape[1]


def _solve(cost: np.ndarray) -> np.ndarray:
    rows, cols = linear_sum_assignment(cost)
    dst = np.empty(cost.shape[0], dtype=np.int64)
    dst[rows] = cols
    return dst


def match_columns(released: np.ndarray, population: np.ndarray) -> np.ndarray:
    """For every released column, the population column it is (one-to-one): quantile
    profiles, refined by correlation profiles (see the module doc)."""
    a, b = profiles(released), profiles(population)
    marginal = msd(a, b)
    dst = _solve(marginal)
    marginal = marginal / max(float(marginal.std()), 1e-300)
    c_rel, c_pop = correlations(released), correlations(population)
    for _ in range(ROUNDS):
        placed = np.empty_like(c_rel)
        placed[np.ix_(dst, dst)] = c_rel  # released correlations in the current original order
        joint = msd(placed, c_pop)[dst]
        new = _solve(joint / max(float(joint.std()), 1e-300) + marginal)
        if np.array_equal(new, dst):
            break
        dst = new
    return dst


class QuantileColumnMap:
    """Released -> original space by quantile column matching against ``population``;
    fitted on the release alone (``prefit``), so it ignores known pairs."""

    name = "quantile-columns"

    def __init__(self, release: np.ndarray, population: np.ndarray) -> None:
        self.dst = match_columns(release, population)

    def fit(self, R: np.ndarray, T: np.ndarray) -> "QuantileColumnMap":
        return self

    def transform(self, R: np.ndarray) -> np.ndarray:
        R = np.asarray(R, dtype=np.float64)
        out = np.empty_like(R)
        out[:, self.dst] = R
        return out
