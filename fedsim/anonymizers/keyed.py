"""Keyed linear transforms shared by the whole federation: ``permutation``,
``random_projection``, ``pca``.

Every client applies the SAME transform to its training data and to its queries, so kNN
on the server compares like with like (the study drew a fresh permutation / basis per
call, which made training and test incomparable).  ``permutation`` and
``random_projection`` derive the transform from the federation ``key``; ``pca`` from a
basis shared by all clients (federated estimate from sufficient statistics).

Released row i is the transform of original row i (``groups_`` is None); labels unchanged.

What they give: the server never sees coordinates in the original embedding space.  What
they do not: each is a fixed linear map, so anyone holding the key (or the basis) inverts
it exactly up to discarded dimensions, and an attacker with a handful of known
(original, released) pairs solves for the map by least squares: n_components pairs for a
projection, a few for a permutation.  Distances (hence re-identification by linkage
against known originals) are preserved exactly by permutation and full-rank orthogonal maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedsim.anonymizers import _ops
from fedsim.anonymizers.base import Anonymizer, check_choice, check_device, check_int


class Permutation(Anonymizer):
    """``permutation``: a column permutation drawn from the federation key (never the identity
    for d >= 2). Offers no privacy against an attacker with a few known pairs, nor against
    one who matches per-feature statistics; it only hides which feature is which."""

    name = "permutation"
    inverted_with = "key"

    def check_data(self, n_samples, n_features):
        super().check_data(n_samples, n_features)
        if n_features < 2:
            raise ValueError(f"permutation: needs at least 2 features to permute, got {n_features}")

    def _fit(self, X, y):
        d = X.shape[1]
        rng = self._key_rng("columns", d)
        perm = rng.permutation(d)
        while np.array_equal(perm, np.arange(d)):
            perm = rng.permutation(d)
        self.permutation_ = perm

    def _release(self, X, y):
        return X[:, self.permutation_], y.copy(), {}

    def _transform_queries(self, Q):
        return Q[:, self.permutation_]

    def invert(self, X_rel):
        return np.asarray(X_rel, np.float32)[:, np.argsort(self.permutation_)]


class RandomProjection(Anonymizer):
    """``random_projection``: X @ R with R (d x n_components) drawn from the federation key.

    ``kind="gaussian"``: entries N(0, 1/n_components) (Johnson-Lindenstrauss: distances kept
    in expectation); ``kind="orthogonal"``: orthonormal columns (Haar-random), an exact
    isometry when n_components equals the dimension."""

    name = "random_projection"
    inverted_with = "key"

    def __init__(self, n_components: int, kind: str = "gaussian", seed: int = 0, key: int = 0) -> None:
        super().__init__(seed=seed, key=key)
        self.n_components = check_int("n_components", n_components, low=1)
        self.kind = check_choice("kind", kind, ("gaussian", "orthogonal"))

    def check_data(self, n_samples, n_features):
        super().check_data(n_samples, n_features)
        if self.n_components > n_features:
            raise ValueError(f"n_components must be in [1, {n_features}] (the embedding dimension), "
                             f"got {self.n_components}")

    def _fit(self, X, y):
        d, k = X.shape[1], self.n_components
        g = self._key_rng(self.kind, d, k).standard_normal((d, k))
        if self.kind == "gaussian":
            R = g / np.sqrt(k)
        else:
            q, r = np.linalg.qr(g)
            R = q * np.where(np.diag(r) < 0, -1.0, 1.0)  # sign fix makes q Haar-distributed
        self.projection_ = R.astype(np.float32)

    def _release(self, X, y):
        return X @ self.projection_, y.copy(), {"n_components": self.n_components}

    def _transform_queries(self, Q):
        return Q @ self.projection_

    def invert(self, X_rel):
        return (np.asarray(X_rel, np.float64) @ np.linalg.pinv(self.projection_.astype(np.float64))).astype(np.float32)


class PCAAnonymizer(Anonymizer):
    """``pca``: projection onto the top ``n_components`` principal axes of ONE basis shared by
    all clients, used for training data and queries alike.

    Federated estimate: each client shares ``statistics(X)`` = (n, sum, X^T X); whoever
    combines them (``from_statistics`` / ``combine_shared_state``) gets the exact pooled
    mean and covariance, hence the same basis as PCA on the pooled data, and hands it back
    with ``set_basis`` / ``set_shared_state``.  The statistics reveal the client's mean and
    second moments (share them through secure aggregation when that matters), and the
    combiner knows the basis, so it can map releases back to the embedding space up to the
    discarded variance.  Without a shared basis ``fit`` uses the client's own data: the
    non-federated fallback, in which clients' coordinates are NOT comparable.

    The basis is computed in float64 with a symmetric eigensolver, sorted by decreasing
    eigenvalue, each axis's sign fixed so that its largest-magnitude coordinate is positive.
    """

    name = "pca"
    needs_shared_state = True
    inverted_with = "public"  # the server combined the statistics: it holds the basis

    def __init__(self, n_components: int, device: str = "auto", seed: int = 0, key: int = 0) -> None:
        super().__init__(seed=seed, key=key)
        self.n_components = check_int("n_components", n_components, low=1)
        self.device = check_device(device)

    def check_data(self, n_samples, n_features):
        super().check_data(n_samples, n_features)
        if self.n_components > n_features:
            raise ValueError(f"n_components must be in [1, {n_features}] (the embedding dimension), "
                             f"got {self.n_components}")
        if getattr(self, "components_", None) is not None and self.components_.shape[1] != n_features:
            raise ValueError(f"pca: the shared basis has dimension {self.components_.shape[1]}, "
                             f"the data {n_features}")

    # -- sufficient statistics -------------------------------------------------------------
    @staticmethod
    def statistics(X: np.ndarray, device: str = "auto") -> dict[str, np.ndarray]:
        """(n, column sums, X^T X) in float64: what a client shares for the federated basis."""
        X = np.asarray(X, dtype=np.float32)
        dev = _ops.device_for(device)
        dtype = torch.float64
        outer = torch.zeros(X.shape[1], X.shape[1], dtype=dtype, device=dev)
        total = torch.zeros(X.shape[1], dtype=dtype, device=dev)
        for s in range(0, len(X), 8192):
            xc = _ops.tensor(X[s:s + 8192], dev, dtype)
            outer += xc.T @ xc
            total += xc.sum(0)
        return {"n": np.array([len(X)], dtype=np.int64), "sum": total.cpu().double().numpy(),
                "outer": outer.cpu().double().numpy()}

    def shared_statistics(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return self.statistics(X, self.device)

    @staticmethod
    def basis(stats: list[dict[str, np.ndarray]], n_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, components (k x d), explained variances) of the pooled data."""
        if not stats:
            raise ValueError("pca: no statistics to combine")
        n = sum(int(np.asarray(s["n"]).reshape(-1)[0]) for s in stats)
        if n < 1:
            raise ValueError("pca: the statistics hold no records")
        total = sum(np.asarray(s["sum"], np.float64) for s in stats)
        outer = sum(np.asarray(s["outer"], np.float64) for s in stats)
        d = total.shape[0]
        if not 1 <= n_components <= d:
            raise ValueError(f"n_components must be in [1, {d}] (the embedding dimension), got {n_components}")
        mean = total / n
        cov = outer / n - np.outer(mean, mean)
        cov = 0.5 * (cov + cov.T)
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1][:n_components]
        comps = vectors[:, order].T
        signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])
        comps *= np.where(signs == 0, 1.0, signs)[:, None]
        return mean, comps, np.clip(values[order], 0, None)

    @classmethod
    def from_statistics(cls, stats: list[dict[str, np.ndarray]], n_components: int, **params: Any) -> "PCAAnonymizer":
        anon = cls(n_components=n_components, **params)
        mean, comps, var = cls.basis(stats, anon.n_components)
        anon.set_basis(mean, comps)
        anon.explained_variance_ = var
        return anon

    @classmethod
    def combine_shared_state(cls, stats, **params):
        anon = cls.from_statistics(stats, **params)
        return {"mean": anon.mean_.astype(np.float64), "components": anon.components_.astype(np.float64)}

    def set_basis(self, mean: np.ndarray, components: np.ndarray) -> "PCAAnonymizer":
        mean = np.asarray(mean, dtype=np.float64).ravel()
        comps = np.asarray(components, dtype=np.float64)
        if comps.ndim != 2 or comps.shape != (self.n_components, mean.shape[0]):
            raise ValueError(f"pca: components must have shape ({self.n_components}, {mean.shape[0]}), "
                             f"got {comps.shape}")
        gram = comps @ comps.T
        if not np.allclose(gram, np.eye(len(comps)), atol=1e-4):
            raise ValueError("pca: the shared components are not orthonormal")
        self.mean_, self.components_ = mean, comps
        self.shared_basis_ = True
        return self

    def set_shared_state(self, state):
        return self.set_basis(state["mean"], state["components"])

    def _fit(self, X, y):
        if getattr(self, "shared_basis_", False):
            return
        mean, comps, var = self.basis([self.statistics(X, self.device)], self.n_components)
        self.mean_, self.components_, self.explained_variance_ = mean, comps, var
        self.shared_basis_ = False

    def _project(self, X):
        return (X - self.mean_.astype(np.float32)) @ self.components_.T.astype(np.float32)

    def _release(self, X, y):
        return self._project(X), y.copy(), {"n_components": self.n_components,
                                            "shared_basis": float(self.shared_basis_)}

    def _transform_queries(self, Q):
        return self._project(Q)

    def invert(self, X_rel):
        return (np.asarray(X_rel, np.float64) @ self.components_ + self.mean_).astype(np.float32)
