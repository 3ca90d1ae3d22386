"""Embedding inversion: how well can the original embeddings be reconstructed from the release?

Threat model. The attacker knows the aux pairs only (not the other originals) and learns a
map f from released space to original space on them. f is the reverse view with the
lowest held-out squared error among identity, orthogonal Procrustes, column matching and
ridge regression (``alignment.fit_attacker``; ridge's α by closed-form leave-one-out error on
the aux pairs, so for d' != d — PCA, random projections — this is the best linear
reconstruction). f is then applied to released rows the attacker did NOT train on.

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

NaN when the attacker has no map (d' != d and no aux pairs) or no held-out row exists.
"""

from __future__ import annotations

import math

import numpy as np

from fedsim.privacy.pairs import Pairs


def inversion_scores(view, X: np.ndarray, X_rel: np.ndarray, pairs: Pairs, aux: np.ndarray,
                     heldout: np.ndarray) -> tuple[float, float]:
    """(inversion_mse, inversion_cosine) on the ``heldout`` released rows."""
    if view is None or len(heldout) == 0:
        return math.nan, math.nan
    Z = view.release_side(X_rel[heldout])  # a reverse view: reconstructions in original space
    T = pairs.targets(X, heldout)
    mse = float(((Z - T) ** 2).mean())
    mu = pairs.targets(X, aux).mean(0) if len(aux) else X.mean(0, dtype=np.float64)
    Zc, Tc = Z - mu, T - mu
    denom = np.linalg.norm(Zc, axis=1) * np.linalg.norm(Tc, axis=1)
    cos = np.where(denom > 0, (Zc * Tc).sum(1) / np.where(denom > 0, denom, 1.0), 0.0)
    return mse, float(cos.mean())
