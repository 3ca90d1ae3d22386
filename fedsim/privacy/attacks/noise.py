"""Likelihood-matched comparison for additive-noise mechanisms (Kerckhoffs: the attacker
knows the mechanism and its scale, which are public in the scenario).

A release r = x + s ⊙ e (e iid per feature, unit scale) has the log-likelihood
log p(r | x) = Σ_f log p_e((r_f − x_f) / s_f) + const, so the most likely source of r is
the original minimising, in the standardised space u = r / s, v = x / s:

============  ======================================  ==========================
noise kind    −log p_e(t), up to constants            cost in the standardised space
============  ======================================  ==========================
gaussian      t² / 2                                  squared L2 (``"l2sq"``)
laplace       |t|                                     L1 (``"l1"``)
uniform       0 if |t| ≤ 1, else ∞                    L∞ (``"linf"``): ≤ 1 iff feasible
============  ======================================  ==========================

Linking by the Euclidean distance in raw units (what an attacker ignorant of the
mechanism does) weighs features by their own spread instead of the noise's and uses the
wrong norm for Laplace noise: at Laplace noise of twice each feature's std, L1 linking in
the standardised space links far more records. For the uniform mechanism every feasible
candidate is equally likely; L∞ ranks the feasible ones by their worst feature.

``dp_gaussian`` clips every record to L2 norm ``clip_norm`` before adding isotropic noise:
the attacker clips its originals the same way (``clip_norm`` is public) before comparing.
Nearest-neighbour ranks under ``"l2"`` equal those under ``"l2sq"``.
"""

from __future__ import annotations

import numpy as np

#: the standardised cost of each noise kind (see the module table)
COST = {"gaussian": "l2sq", "laplace": "l1", "uniform": "linf"}


class NoiseView:
    """Both sides divided by the per-feature noise scale (originals clipped first when the
    mechanism clips): the space where the noise is iid with unit scale. Needs no pairs."""

    direction = "standardised"
    name = "likelihood"

    def __init__(self, kind: str, scale: np.ndarray | float, clip_norm: float | None = None) -> None:
        self.kind, self.clip_norm = kind, clip_norm
        self.scale = np.asarray(scale, dtype=np.float64)
        self.cost = COST[kind]
        self.metric = "l2" if self.cost == "l2sq" else self.cost

    def fit(self, R: np.ndarray, T: np.ndarray) -> "NoiseView":
        return self

    def release_side(self, R: np.ndarray) -> np.ndarray:
        return np.asarray(R, dtype=np.float64) / self.scale

    def original_side(self, A: np.ndarray) -> np.ndarray:
        A = np.asarray(A, dtype=np.float64)
        if self.clip_norm is not None:
            norms = np.linalg.norm(A, axis=1, keepdims=True)
            A = A * np.minimum(1.0, self.clip_norm / np.maximum(norms, 1e-30))
        return A / self.scale
