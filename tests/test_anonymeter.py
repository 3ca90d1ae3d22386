"""anonymeter's linkability and inference risks next to fedsim's (optional dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsim.privacy.anonymeter_risks import KEYS, anonymeter_risks, available

pytestmark = pytest.mark.skipif(not available(), reason="anonymeter is not installed (README: anonymeter)")


def _data(n: int = 400, d: int = 16, seed: int = 0):
    g = np.random.default_rng(seed)
    centers = g.normal(scale=4.0, size=(8, d))
    y = g.integers(0, 8, n)
    X = (centers[y] + g.normal(size=(n, d))).astype(np.float32)
    yc = g.integers(0, 8, 150)
    C = (centers[yc] + g.normal(size=(150, d))).astype(np.float32)
    return g, X, y, C, yc


def test_risk_falls_with_noise_and_comes_with_intervals():
    g, X, y, C, yc = _data()
    close = anonymeter_risks(X, y, X + 0.01 * g.normal(size=X.shape).astype(np.float32), y, C, yc, seed=1)
    far = anonymeter_risks(X, y, X + 20.0 * g.normal(size=X.shape).astype(np.float32), y, C, yc, seed=1)
    assert close["anonymeter_linkability"] > 0.9 > 0.2 > far["anonymeter_linkability"]
    for r in (close, far):
        assert set(r) == set(KEYS) and r["anonymeter_n_attacks"] == 150
        for name in ("linkability", "inference"):
            assert r[f"anonymeter_{name}_ci_low"] <= r[f"anonymeter_{name}"] <= r[f"anonymeter_{name}_ci_high"]


def test_same_seed_same_numbers_and_nan_outside_the_original_space():
    g, X, y, C, yc = _data()
    rel = X + 0.5 * g.normal(size=X.shape).astype(np.float32)
    assert anonymeter_risks(X, y, rel, y, C, yc, seed=3) == anonymeter_risks(X, y, rel, y, C, yc, seed=3)
    projected = anonymeter_risks(X, y, rel[:, :4], y, C, yc, seed=3)
    assert all(math.isnan(v) for v in projected.values())
    few = anonymeter_risks(X, y, rel, y, C[:5], yc[:5], seed=3)  # below the minimum number of attacks
    assert all(math.isnan(v) for v in few.values())
