"""The aggregate-sharing methods, ``fed_ncm`` and ``fed_ridge``, as Flower-free objects:
what a client computes from its records, and the model the server builds from the sum of
every client's statistics (fedsim.clients.aggregates and fedsim.strategies.aggregates move
them).

* ``fed_ncm`` (FedNCM, Legate et al., 2023): per-class sums and counts -> the NCM of the
  pooled records.
* ``fed_ridge`` (Fed3R, Fanì et al., 2024): X^T X, X^T Y, counts -> the closed-form ridge
  of the pooled records.  ``lam = "auto"``: each client also sends the statistics of a
  held-out share of its records (``val.<name>``); the server fits on the rest (all minus
  held-out, by subtraction), scores ``lam = r * tr(G) / d`` for every ratio r of
  ``lam_grid`` by the held-out squared error computed from the summed statistics alone,
  ``|X_v W - Y_v|^2 = tr(W^T G_v W) - 2 tr(W^T B_v) + tr(Y_v^T Y_v)`` (the last term is
  the held-out count, Y being one-hot), and refits on all records with the best ratio.
  ``random_features = D`` maps every embedding through random Fourier features drawn from
  the federation key first (fedsim.classifiers.features): the server, which never holds
  the key, can neither map a query nor invert a feature.

Differential privacy (``epsilon`` set): each client clips its records to L2 norm
``clip_norm`` and adds Gaussian noise to its statistics before they leave it -- local
(epsilon, delta)-DP per record, whoever aggregates (the server alone, or SecAgg+).  The
neighbouring relation is ``dp_gaussian``'s: one record's embedding replaced by any other
(labels are public, so counts stay exact), which makes the epsilons comparable.  The L2
sensitivity of the statistics, in units of the norm bound B (sums / B, X^T Y / B,
X^T X / B^2), is 2 for fed_ncm (x - x' in one row), sqrt(4.5) for fed_ridge (X^T X and
X^T Y together: 2 - 2t^2 + 2 - 2t, t = <x, x'> / B^2, is at most 4.5 at t = -1/2) and 3
with ``lam = "auto"`` (a held-out record is in both the full and the held-out statistics).
The noise multiplier is the analytic Gaussian mechanism's for (epsilon, delta), the one
``dp_gaussian`` uses, so the accountant composes both alike; the noise is drawn from the
federation key (the server, which knows the scenario seed, cannot regenerate it).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from fedsim.anonymizers.noise import analytic_gaussian_sigma
from fedsim.classifiers.base import Classifier, check_int, check_number
from fedsim.classifiers.features import RandomFourierFeatures
from fedsim.classifiers.ncm import NCMClassifier
from fedsim.classifiers.ridge import RidgeClassifier
from fedsim.classifiers.sufficient import clip_rows, gaussian_noise, ncm_statistics, ridge_statistics
from fedsim.registry import Registry
from fedsim.seeding import derive_seed

#: prefix of the statistics of the held-out share (fed_ridge, lam = "auto")
HELD_OUT = "val."
#: fed_ridge's lam = "auto" candidates, as ratios of tr(X^T X) / d (the Gram matrix's mean eigenvalue)
#: (the large ratios are for noised statistics: the noise's spectrum must be dominated)
DEFAULT_LAM_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


class AggregateMethod:
    """One aggregate-sharing method; ``classifier`` names its model (results are keyed by it).

    ``key`` is the federation key (clients only; a method that needs it says so in
    ``needs_key``); the server builds the same object without it."""

    classifier = ""
    #: parameters whose value is a list (a list of lists sweeps them)
    list_valued: tuple[str, ...] = ()

    def __init__(self, key: int | None = None, epsilon: float | str | None = None, delta: float = 1e-5,
                 clip_norm: float = 1.0) -> None:
        self.key = key
        # "off" (or no epsilon): no noise -- lets one sweep compare with and without DP
        self.epsilon = None if epsilon in (None, "off") else check_number("epsilon", epsilon, 0.0, low_open=True)
        self.delta = check_number("delta", delta, 0.0, 1.0, low_open=True)
        if self.delta == 1.0:
            raise ValueError("delta must be a number in (0, 1), got 1.0")
        self.clip_norm = check_number("clip_norm", clip_norm, 0.0, low_open=True)

    @property
    def needs_key(self) -> bool:
        return self.epsilon is not None  # the noise is drawn from it

    def norm_bound(self, max_norm: float) -> float:
        """The largest L2 norm of a vector the statistics sum, given the public bound
        ``max_norm`` on an embedding's (secure aggregation scales the statistics by it);
        with differential privacy the records are clipped to ``clip_norm`` first."""
        return min(max_norm, self.clip_norm) if self.epsilon is not None else max_norm

    def sensitivity(self) -> float:
        """L2 sensitivity of the statistics to one record's embedding, in units of the norm bound."""
        raise NotImplementedError

    def noise_multiplier(self) -> float | None:
        """Noise standard deviation over L2 sensitivity (None without differential privacy)."""
        return None if self.epsilon is None else analytic_gaussian_sigma(self.epsilon, self.delta, 1.0)

    def dp_info(self) -> dict[str, float]:
        if self.epsilon is None:
            return {}
        return {"epsilon": self.epsilon, "delta": self.delta, "clip_norm": self.clip_norm,
                "noise_multiplier": self.noise_multiplier(), "sensitivity": self.sensitivity()}

    def _clip(self, x: np.ndarray) -> np.ndarray:
        return clip_rows(x, self.clip_norm) if self.epsilon is not None else x

    def _privatise(self, stats: dict[str, np.ndarray], norm: float, seed: int) -> dict[str, np.ndarray]:
        """The statistics as they may leave the client: noised when ``epsilon`` is set."""
        if self.epsilon is None:
            return stats
        if self.key is None:
            raise ValueError(f"{type(self).__name__} with epsilon needs the federation key (the noise is drawn from it)")
        rng = np.random.default_rng(derive_seed(self.key, "dp-statistics", seed))
        return gaussian_noise(stats, self.noise_multiplier() * self.sensitivity(), norm, rng)

    def statistic_names(self) -> tuple[str, ...]:
        """The statistics a client sends (their shapes: fedsim.protocol.STATISTIC_SHAPES)."""
        raise NotImplementedError

    def client_statistics(self, X: np.ndarray, y: np.ndarray, Q: np.ndarray, num_classes: int, seed: int
                          ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(statistics of the records (X, y), the queries Q in the model's input space);
        ``seed`` draws anything random that stays on the client (a held-out share)."""
        raise NotImplementedError

    def fit(self, total: dict[str, np.ndarray]) -> tuple[Classifier, dict[str, Any]]:
        """(the model, what the server chose and learned) from the statistics summed over clients."""
        raise NotImplementedError

    def model(self) -> Classifier:
        """An unfitted model to restore a shipped state into (client-side evaluation)."""
        raise NotImplementedError


class FedNCM(AggregateMethod):
    """``metric`` and ``temperature``: the NCM classifier's."""

    classifier = "ncm"

    def __init__(self, metric: str = "cosine", temperature: float = 0.1, key: int | None = None,
                 epsilon: float | str | None = None, delta: float = 1e-5, clip_norm: float = 1.0) -> None:
        super().__init__(key, epsilon, delta, clip_norm)
        self.params = {"metric": metric, "temperature": temperature}
        NCMClassifier(**self.params)  # checks them

    def statistic_names(self) -> tuple[str, ...]:
        return ("sums", "counts")

    def sensitivity(self) -> float:
        return 2.0

    def client_statistics(self, X: np.ndarray, y: np.ndarray, Q: np.ndarray, num_classes: int, seed: int
                          ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        stats = ncm_statistics(X, y, num_classes, self._clip if self.epsilon is not None else None)
        return self._privatise(stats, self.clip_norm, seed), Q

    def fit(self, total: dict[str, np.ndarray]) -> tuple[Classifier, dict[str, Any]]:
        info = {"n_records": int(total["counts"].sum()), "n_features": int(total["sums"].shape[1]), **self.dp_info()}
        return NCMClassifier.from_statistics(total, **self.params), info

    def model(self) -> Classifier:
        return NCMClassifier(**self.params)


def held_out(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the held-out share: round(fraction * n) of n records, drawn from ``seed``."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:round(fraction * n)])


def nearest_psd(gram: np.ndarray) -> np.ndarray:
    """The positive semi-definite matrix nearest ``gram`` (negative eigenvalues set to 0):
    noised Gram matrices are indefinite, and an indefinite held-out Gram makes the held-out
    error of weak penalties look small (post-processing: no privacy cost)."""
    s, V = np.linalg.eigh((gram + gram.T) / 2)
    return (V * np.maximum(s, 0.0)) @ V.T


def _scale(gram: np.ndarray) -> float:
    """tr(G) / d, the mean eigenvalue: what makes a ratio a penalty in the data's units."""
    scale = float(np.trace(gram)) / len(gram)
    return scale if scale > 0 else 1.0


def select_lambda(fit: dict[str, np.ndarray], val: dict[str, np.ndarray], ratios: list[float]
                  ) -> tuple[float, dict[float, float]]:
    """(the best ratio, held-out mean squared error per ratio) of ridges fitted on ``fit``
    with ``lam = ratio * tr(G_fit) / d``, scored from the held-out statistics ``val`` alone."""
    n_val = int(val["counts"].sum())
    if n_val == 0:
        raise ValueError('lam = "auto" needs held-out records; the clients held out none (raise val_fraction)')
    s, V = np.linalg.eigh(fit["gram"])
    VB, scale = V.T @ fit["xty"], _scale(fit["gram"])
    errors = {}
    for r in ratios:
        W = V @ (VB / (s + r * scale)[:, None])
        sq = np.sum(W * (val["gram"] @ W)) - 2.0 * np.sum(W * val["xty"]) + n_val
        errors[r] = float(sq) / n_val
    return min(errors, key=errors.get), errors


class FedRidge(AggregateMethod):
    """``lam``: the penalty (> 0) or ``"auto"`` (held-out choice among ``lam_grid`` ratios,
    ``val_fraction`` of each client's records held out); ``random_features`` D > 0: random
    Fourier features of bandwidth ``rf_gamma`` (on L2-normalised embeddings) first."""

    classifier = "ridge"
    list_valued = ("lam_grid",)

    def __init__(self, lam: float | str = 1.0, val_fraction: float = 0.2,
                 lam_grid: list[float] | tuple[float, ...] = DEFAULT_LAM_GRID, random_features: int = 0,
                 rf_gamma: float = 1.0, key: int | None = None, epsilon: float | str | None = None,
                 delta: float = 1e-5, clip_norm: float = 1.0) -> None:
        super().__init__(key, epsilon, delta, clip_norm)
        if lam != "auto":
            ok = not isinstance(lam, bool) and isinstance(lam, numbers.Real) and math.isfinite(lam) and lam > 0
            if not ok:
                raise ValueError(f'lam must be a number > 0 or "auto", got {lam!r}')
        self.lam = lam
        self.val_fraction = check_number("val_fraction", val_fraction, 0.0, 1.0, low_open=True)
        if self.val_fraction == 1.0:
            raise ValueError("val_fraction must be a number in (0, 1), got 1.0")
        if not isinstance(lam_grid, (list, tuple)) or not lam_grid:
            raise ValueError(f"lam_grid must be a non-empty list of numbers > 0, got {lam_grid!r}")
        self.lam_grid = [check_number("lam_grid[]", r, 0.0, low_open=True) for r in lam_grid]
        self.random_features = check_int("random_features", random_features, 0)
        self.rf_gamma = check_number("rf_gamma", rf_gamma, 0.0, low_open=True)

    @property
    def needs_key(self) -> bool:
        return self.random_features > 0 or super().needs_key

    def norm_bound(self, max_norm: float) -> float:
        """Random Fourier features have norm <= sqrt(2) whatever the embedding (sqrt(2/D) cos)."""
        return math.sqrt(2.0) if self.random_features else super().norm_bound(max_norm)

    def sensitivity(self) -> float:
        return 3.0 if self.lam == "auto" else math.sqrt(4.5)

    def feature_map(self, dim: int) -> RandomFourierFeatures | None:
        """The clients' shared random-features map (None when ``random_features = 0``)."""
        if not self.random_features:
            return None
        if self.key is None:
            raise ValueError("fed_ridge with random_features > 0 needs the federation key (the clients' secret)")
        return RandomFourierFeatures(dim, self.random_features, self.rf_gamma,
                                     seed=derive_seed(self.key, "fed_ridge", "random-features"))

    def statistic_names(self) -> tuple[str, ...]:
        names = ("gram", "xty", "counts")
        return names + tuple(HELD_OUT + n for n in names) if self.lam == "auto" else names

    def client_statistics(self, X: np.ndarray, y: np.ndarray, Q: np.ndarray, num_classes: int, seed: int
                          ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        fmap = self.feature_map(np.shape(X)[1])
        # random features have norm <= sqrt(2) already; without them DP clips the embeddings
        transform = fmap.transform if fmap is not None else (self._clip if self.epsilon is not None else None)
        stats = ridge_statistics(X, y, num_classes, transform)
        if self.lam == "auto":
            idx = held_out(len(y), self.val_fraction, seed)
            val = ridge_statistics(np.asarray(X)[idx], np.asarray(y)[idx], num_classes, transform)
            stats.update({HELD_OUT + k: v for k, v in val.items()})
        queries = np.asarray(transform(Q) if transform is not None else Q, np.float32)
        return self._privatise(stats, self.norm_bound(self.clip_norm), seed), queries

    def fit(self, total: dict[str, np.ndarray]) -> tuple[Classifier, dict[str, Any]]:
        names = ("gram", "xty", "counts")
        full = {k: total[k] for k in names}
        noised = self.epsilon is not None
        info: dict[str, Any] = {"n_records": int(full["counts"].sum()), "n_features": int(full["gram"].shape[0]),
                                "random_features": self.random_features, **self.dp_info()}
        lam = self.lam
        if lam == "auto":
            val = {k: total[HELD_OUT + k] for k in names}
            fit = {k: full[k] - val[k] for k in names}
            if noised:
                fit["gram"], val = nearest_psd(fit["gram"]), {**val, "gram": nearest_psd(val["gram"])}
            ratio, errors = select_lambda(fit, val, self.lam_grid)
            lam = ratio * _scale(full["gram"])
            info.update({"lam_ratio": ratio, "validation_mse": {f"{r:g}": e for r, e in errors.items()},
                         "n_validation": int(val["counts"].sum())})
        info["lam"] = float(lam)
        if noised:
            full["gram"] = nearest_psd(full["gram"])
        return RidgeClassifier.from_statistics(full, lam=lam), info

    def model(self) -> Classifier:
        return RidgeClassifier()


AGGREGATES: Registry[AggregateMethod] = Registry("aggregate method")
AGGREGATES.register("fed_ncm")(FedNCM)
AGGREGATES.register("fed_ridge")(FedRidge)


def validate(name: str, params: dict[str, Any]) -> None:
    """Check a scenario's parameters for ``name``; ``key`` is the clients' secret, never the user's."""
    if "key" in params:
        raise ValueError("parameter 'key' cannot be set in a scenario: the federation key is the clients' secret")
    AGGREGATES.create(name, **params)
