"""Random Fourier features: a fixed nonlinear map under which a linear model (the closed-form
ridge) approximates a Gaussian-kernel model, while the statistics stay sums.

``phi(x) = sqrt(2 / D) cos(Omega x_hat + b)`` with ``x_hat = x / |x|``,
``Omega ~ N(0, 2 gamma)`` and ``b ~ U[0, 2 pi)`` (Rahimi & Recht, 2007), so that
``phi(x) . phi(y) ~ exp(-gamma |x_hat - y_hat|^2)``.  Inputs are L2-normalised first, which
makes ``gamma`` independent of the embeddings' scale (squared distances lie in [0, 4]).
The map is drawn from ``seed`` alone: parties that share the seed share the map, a party
without it can neither map a query nor invert a feature.
"""

from __future__ import annotations

import numpy as np

from fedsim.classifiers.base import check_int, check_number


class RandomFourierFeatures:
    """The seeded map ``R^dim_in -> R^n_features`` (float64 in, float64 out)."""

    def __init__(self, dim_in: int, n_features: int, gamma: float = 1.0, seed: int = 0) -> None:
        self.dim_in = check_int("dim_in", dim_in, 1)
        self.n_features = check_int("n_features", n_features, 1)
        self.gamma = check_number("gamma", gamma, 0.0, low_open=True)
        gen = np.random.default_rng(check_int("seed", seed, 0))
        self.omega = gen.normal(0.0, np.sqrt(2.0 * self.gamma), (self.dim_in, self.n_features))
        self.offset = gen.uniform(0.0, 2.0 * np.pi, self.n_features)

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim_in:
            raise ValueError(f"expected an (n, {self.dim_in}) array, got shape {X.shape}")
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        unit = X / np.where(norms > 0, norms, 1.0)
        return np.sqrt(2.0 / self.n_features) * np.cos(unit @ self.omega + self.offset)
