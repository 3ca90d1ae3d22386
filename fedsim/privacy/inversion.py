"""Embedding inversion: how well can the original embeddings be reconstructed from the release?

Threat model. The attacker knows the aux pairs only (not the other originals) and, when
its profile calls for it, a reference population (for a permutation: quantile column
matching against it, ``attacks.quantiles``, needs no pair). It learns a map f from
released space to original space. f is the reverse view with the lowest held-out squared
error among identity, orthogonal Procrustes, column matching, ridge regression
(``alignment.fit_attacker``; ridge's α by closed-form leave-one-out error on the aux pairs,
so for d' != d — PCA, random projections — this is the best linear reconstruction) and
the pair-free reverse views; without aux pairs, the profile's pair-free reverse view, else
identity. f is then applied to released rows the attacker did NOT train on.

Targets. For per-record methods the target of released row j is x_j; for aggregating
methods it is the mean of the originals behind it (the most any reconstruction of one
vector can recover; the spread inside the group is reported by ``reconstruction_error``).

Over a seeded sample H (≤ ``max_samples``) of the non-aux released rows with a source:

* ``inversion_mse``    = mean_{j∈H} (1/d) |f(r_j) − t_j|²      (per element, data units;
  compare with the per-element variance of the originals: predicting their mean scores
  about that variance, a perfect inversion 0);
* ``inversion_cosine`` = mean_{j∈H} cos(f(r_j) − μ, t_j − μ), μ = mean of the aux targets
  (the attacker's own estimate of the data mean; the mean of all originals when there are
  no aux pairs). Centring matters: embeddings often share a large mean direction (e.g.
  non-negative features), so raw cosines are high even for a reconstruction that only
  knows the mean. Centred, predicting the aux mean scores exactly 0 (a zero vector has
  cosine 0 here) and a perfect reconstruction 1. It
  still credits class-level information: a release that keeps only the class (e.g. class
  centre + fresh noise) reconstructs the class centre and scores well above 0 — use
  ``reidentification_rate`` for record-level leakage.

Aggregating methods: the target (group mean) is what the row itself is, so a noise-free
group mean scores a cosine of 1 against it whatever the group hides. ``*_member`` scores
the same reconstruction against ONE member drawn at random (seeded) from the group
instead: ``inversion_mse_member`` = mean (1/d)|f(r_j) − x_{i(j)}|², ``inversion_cosine_member``
= mean cos(f(r_j) − μ, x_{i(j)} − μ) — how well the attacker recovers a record, not the
aggregate (equal to the plain scores for per-record releases).

``inversion_n`` = |H|; ``inversion_cosine_ci_*`` and ``inversion_cosine_member_ci_*`` are the
normal 95% intervals of the mean cosine (``stats.mean_ci``). ``inversion_attack`` = the
space of f (``attacks.SPACES``). NaN when the attacker has no map (d' != d, no aux pairs,
no pair-free view; ``inversion_reason`` 4) or when |H| < ``stats.MIN_RATE_N`` (2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedsim.privacy.attacks import space_of
from fedsim.privacy.pairs import Pairs
from fedsim.privacy.stats import MIN_RATE_N, REASON_NO_MAP, REASON_OK, REASON_TOO_FEW, mean_ci

NAN3 = (math.nan, math.nan, math.nan)


@dataclass
class InversionResult:
    mse: float
    cosine: tuple[float, float, float]  # mean, low, high
    mse_member: float
    cosine_member: tuple[float, float, float]
    n: int
    code: int  # space of the reverse view (0: none)
    reason: int  # stats.REASON_*
    view: str = ""


def _cosines(Z: np.ndarray, T: np.ndarray, mu: np.ndarray) -> np.ndarray:
    Zc, Tc = Z - mu, T - mu
    denom = np.linalg.norm(Zc, axis=1) * np.linalg.norm(Tc, axis=1)
    return np.where(denom > 0, (Zc * Tc).sum(1) / np.where(denom > 0, denom, 1.0), 0.0)


def inversion_scores(view, X: np.ndarray, X_rel: np.ndarray, pairs: Pairs, aux: np.ndarray,
                     heldout: np.ndarray, members: np.ndarray) -> InversionResult:
    """Scores on the ``heldout`` released rows, against their targets and against the
    sampled ``members`` (one source per row)."""
    n = len(heldout)
    if view is None:
        return InversionResult(math.nan, NAN3, math.nan, NAN3, n, 0, REASON_NO_MAP)
    if n < MIN_RATE_N:
        return InversionResult(math.nan, NAN3, math.nan, NAN3, n, 0, REASON_TOO_FEW)
    Z = view.release_side(X_rel[heldout])  # a reverse view: reconstructions in original space
    T = pairs.targets(X, heldout)
    M = np.asarray(X[members], dtype=np.float64)
    mu = pairs.targets(X, aux).mean(0) if len(aux) else X.mean(0, dtype=np.float64)
    return InversionResult(float(((Z - T) ** 2).mean()), mean_ci(_cosines(Z, T, mu)),
                           float(((Z - M) ** 2).mean()), mean_ci(_cosines(Z, M, mu)), n,
                           space_of(view), REASON_OK, view.name)
