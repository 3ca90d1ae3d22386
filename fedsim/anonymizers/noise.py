"""Per-record additive noise: ``random`` (uniform), ``laplace``, ``gaussian``, ``dp_gaussian``.

Released row i is original row i plus fresh noise (``groups_`` is None); labels are
released unchanged.  Queries get fresh noise of the same distribution and scale (a
separate stream of the client's seed), so they live in the same noisy space as the
training release.  Noise is drawn with numpy on the CPU so the numbers do not depend on
the device.

What it gives: every released vector is blurred; with ``dp_gaussian`` the blur is
calibrated to a formal (epsilon, delta) guarantee per record.  What it does not: the
plain noise methods carry no formal guarantee, and a small noise scale relative to the
spread of the data leaves every record re-identifiable by its nearest neighbour.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

from fedsim.anonymizers.base import Anonymizer, check_bool, check_number


class _AdditiveNoise(Anonymizer):
    """Shared machinery: ``noise_scale`` is absolute, or with ``relative=True`` a multiple of
    each feature's standard deviation measured on the client's own data in ``fit`` (the
    same per-feature scale is then used for the release and for the queries)."""

    def __init__(self, noise_scale: float, relative: bool = False, seed: int = 0, key: int = 0) -> None:
        super().__init__(seed=seed, key=key)
        self.noise_scale = check_number("noise_scale", noise_scale, low=0, low_open=True)
        self.relative = check_bool("relative", relative)

    def check_data(self, n_samples: int, n_features: int) -> None:
        super().check_data(n_samples, n_features)
        if self.relative and n_samples < 2:
            raise ValueError(f"{self.name}: relative=true measures each feature's standard deviation "
                             f"and needs at least 2 records, got {n_samples}")

    def _fit(self, X, y):
        if self.relative:
            std = X.std(axis=0, dtype=np.float64)
            positive = std[std > 0]
            # a constant feature says nothing about any one record; give it the typical scale
            std[std == 0] = np.median(positive) if positive.size else 1.0
            self.scale_ = (self.noise_scale * std).astype(np.float32)
        else:
            self.scale_ = np.float32(self.noise_scale)

    def _unit_noise(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def _noisy(self, X: np.ndarray, stream: str) -> np.ndarray:
        noise = self._unit_noise(self._rng(stream), X.shape)
        return X + self.scale_ * noise

    def _release(self, X, y):
        info = {"noise_scale": self.noise_scale,
                "noise_std": float(np.mean(self.scale_) * self._unit_std)}
        return self._noisy(X, "release"), y.copy(), info

    def _transform_queries(self, Q):
        return self._noisy(Q, "queries")


class UniformNoise(_AdditiveNoise):
    """``random``: uniform noise in [-noise_scale, noise_scale] per feature (what the study's
    README describes; its code drew Gaussian noise by mistake)."""

    name = "random"
    _unit_std = 1 / math.sqrt(3)

    def _unit_noise(self, rng, shape):
        return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)


class LaplaceNoise(_AdditiveNoise):
    """``laplace``: Laplace noise with scale b = noise_scale (variance 2 b^2) per feature."""

    name = "laplace"
    _unit_std = math.sqrt(2)

    def _unit_noise(self, rng, shape):
        return rng.laplace(0.0, 1.0, size=shape).astype(np.float32)


class GaussianNoise(_AdditiveNoise):
    """``gaussian``: Gaussian noise with standard deviation noise_scale per feature."""

    name = "gaussian"
    _unit_std = 1.0

    def _unit_noise(self, rng, shape):
        return rng.standard_normal(size=shape, dtype=np.float32)


# --- differential privacy -----------------------------------------------------------------

def analytic_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    """delta achieved by the Gaussian mechanism with noise ``sigma`` (Balle & Wang 2018, Thm 8):
    Phi(D/(2s) - e s/D) - e^e Phi(-D/(2s) - e s/D), evaluated in log space."""
    a = sensitivity / (2 * sigma)
    b = epsilon * sigma / sensitivity
    return math.exp(log_ndtr(a - b)) - math.exp(epsilon + log_ndtr(-a - b))


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float, rtol: float = 1e-12) -> float:
    """Smallest sigma for which the Gaussian mechanism is (epsilon, delta)-DP, by bisection on
    the exact condition (valid for every epsilon > 0, unlike the classical bound)."""
    if epsilon <= 0 or not 0 < delta < 1 or sensitivity <= 0:
        raise ValueError("need epsilon > 0, 0 < delta < 1 and sensitivity > 0")
    lo = hi = sensitivity
    while analytic_delta(hi, epsilon, sensitivity) > delta:
        lo, hi = hi, hi * 2
    while analytic_delta(lo, epsilon, sensitivity) <= delta:
        lo, hi = lo / 2, lo
        if lo < 1e-300:
            return hi
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if analytic_delta(mid, epsilon, sensitivity) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def classical_gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """The textbook sqrt(2 ln(1.25/delta)) D / epsilon (only proven for epsilon < 1)."""
    return math.sqrt(2 * math.log(1.25 / delta)) * sensitivity / epsilon


class DPGaussian(Anonymizer):
    """``dp_gaussian``: local (epsilon, delta)-differential privacy for each released vector.

    Each vector is clipped to L2 norm ``clip_norm`` and gets N(0, sigma^2 I) noise, sigma from
    the analytic Gaussian mechanism.  Neighbouring relation: one record's embedding replaced
    by any other vector, so after clipping the L2 sensitivity is 2 * clip_norm.  The guarantee
    holds for each released vector on its own, whatever the attacker knows; releasing the
    same record twice (e.g. as a training row and as a query) composes (2 epsilon, 2 delta).
    Labels are released in clear and are NOT protected.  Queries are clipped and noised the
    same way (a separate noise stream).

    ``clip_norm`` is data-independent on purpose (choosing it from the data would leak); the
    default 1.0 puts typical embeddings (norm well above 1) on the unit sphere, i.e. keeps
    their cosine geometry.  Expect a large utility loss: sigma is per coordinate, so the
    noise norm is about sigma * sqrt(d) against a signal of norm <= clip_norm.
    """

    name = "dp_gaussian"

    def __init__(self, epsilon: float, delta: float = 1e-5, clip_norm: float = 1.0,
                 seed: int = 0, key: int = 0) -> None:
        super().__init__(seed=seed, key=key)
        self.epsilon = check_number("epsilon", epsilon, low=0, low_open=True)
        self.delta = check_number("delta", delta, low=0, high=1, low_open=True, high_open=True)
        self.clip_norm = check_number("clip_norm", clip_norm, low=0, low_open=True)
        self.sensitivity_ = 2.0 * self.clip_norm
        self.sigma_ = analytic_gaussian_sigma(self.epsilon, self.delta, self.sensitivity_)

    def noise_multiplier(self) -> float:
        return self.sigma_ / self.sensitivity_

    def clip(self, X: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(X, axis=1, keepdims=True).astype(np.float32)
        return X * np.minimum(1.0, self.clip_norm / np.maximum(norms, 1e-30)).astype(np.float32)

    def _noisy(self, X: np.ndarray, stream: str) -> np.ndarray:
        noise = self._rng(stream).standard_normal(size=X.shape, dtype=np.float32)
        return self.clip(X) + np.float32(self.sigma_) * noise

    def _release(self, X, y):
        info = {"epsilon": self.epsilon, "delta": self.delta, "sigma": self.sigma_,
                "clip_norm": self.clip_norm, "sensitivity": self.sensitivity_}
        return self._noisy(X, "release"), y.copy(), info

    def _transform_queries(self, Q):
        return self._noisy(Q, "queries")
