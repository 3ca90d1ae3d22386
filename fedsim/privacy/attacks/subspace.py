"""Projection releases without known pairs: the attacker finds the projection itself.

* ``SubspaceMap`` — a release that lies in a lower-dimensional affine subspace of the
  original space (a pca release mapped back with the basis, as the server does): the
  release's own SVD gives that subspace (mean μ and the r right singular vectors V above
  ``RANK_TOL`` × the largest singular value); the attacker projects every original onto
  it, x ↦ μ + (x − μ) VᵀV, and compares there. Exact for a pca release: the projected
  originals ARE the released rows.
* ``SelfPCAMap`` — a release of k < d principal coordinates (a raw pca release): the
  attacker runs PCA on the population it holds (its originals), with the sign rule of
  ``fedsim.anonymizers.keyed.PCAAnonymizer.basis``, keeps the top min(d, 2k) axes, and
  matches every released coordinate to one axis and a sign by quantile profiles
  (``attacks.quantiles``; Hungarian on the cheaper of the two signs, profiles centred),
  then shifts by the release mean. Exact when the attacker's population gave the
  release's basis; with a basis pooled over several clients the axes differ a little
  and ``attacks.bootstrap`` refines the map from the links it finds.
Both are forward maps (original -> release space) fitted on the release alone.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from fedsim.anonymizers.keyed import PCAAnonymizer
from fedsim.privacy.alignment import svd
from fedsim.privacy.attacks.quantiles import msd, profiles

RANK_TOL = 1e-6


def release_rank(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, V (r, d)): the affine subspace spanned by the released rows."""
    R = np.asarray(R, dtype=np.float64)
    mu = R.mean(0)
    _, S, Vt = svd(R - mu)
    keep = S > (S[0] if S.size else 0.0) * RANK_TOL
    return mu, Vt[keep]


class SubspaceMap:
    name = "subspace"

    def __init__(self, mean: np.ndarray, basis: np.ndarray) -> None:
        self.mean, self.basis = mean, basis

    def fit(self, A: np.ndarray, B: np.ndarray) -> "SubspaceMap":
        return self

    def transform(self, A: np.ndarray) -> np.ndarray:
        Ac = np.asarray(A, dtype=np.float64) - self.mean
        return self.mean + (Ac @ self.basis.T) @ self.basis


class SelfPCAMap:
    name = "self-pca"

    def __init__(self, release: np.ndarray, population: np.ndarray) -> None:
        R = np.asarray(release, dtype=np.float64)
        k, d = R.shape[1], population.shape[1]
        stats = PCAAnonymizer.statistics(population, device="cpu")
        self.mean, comps, _ = PCAAnonymizer.basis([stats], min(d, 2 * k))
        P = (np.asarray(population, np.float64) - self.mean) @ comps.T
        a, b = profiles(R - R.mean(0)), profiles(P - P.mean(0))
        plus, minus = msd(a, b), msd(a, -b[:, ::-1])  # profiles of P and of -P
        rows, cols = linear_sum_assignment(np.minimum(plus, minus))  # k <= 2k axes: rows = 0..k-1
        sign = np.where(plus[rows, cols] <= minus[rows, cols], 1.0, -1.0)
        self.components = comps[cols] * sign[:, None]
        self.offset = R.mean(0)  # the projected population is centred; the release is not

    def fit(self, A: np.ndarray, B: np.ndarray) -> "SelfPCAMap":
        return self

    def transform(self, A: np.ndarray) -> np.ndarray:
        return (np.asarray(A, dtype=np.float64) - self.mean) @ self.components.T + self.offset
