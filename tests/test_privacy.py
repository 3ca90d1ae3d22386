"""Privacy metrics and emulated attacks against releases with known truths.

Releases are built here with plain numpy (identity, column permutation, rotation, noise,
group means, projection) so these tests do not depend on the anonymizer implementations.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from fedsim.privacy import KEYS, evaluate, geometry
from fedsim.privacy.pairs import build_pairs
from fedsim.privacy.study import overlap, reconstruction_error

N, D, CLASSES = 1000, 32, 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def blobs():
    """10-class Gaussian blobs: training set X, y and a held-out control set of the same law."""
    r = np.random.default_rng(0)
    centers = r.normal(0, 3, (CLASSES, D))
    y = r.integers(0, CLASSES, N)
    X = (centers[y] + r.normal(0, 1, (N, D))).astype(np.float32)
    yc = r.integers(0, CLASSES, 400)
    Xc = (centers[yc] + r.normal(0, 1, (400, D))).astype(np.float32)
    return X, y, Xc, centers


def run(blobs, X_rel, y_rel=None, **kw):
    X, y, Xc, _ = blobs
    kw.setdefault("X_control", Xc)
    return evaluate(X, y, X_rel, y if y_rel is None else y_rel, seed=0, **kw)


def noisy(X, scale, seed=1):
    r = np.random.default_rng(seed)
    return (X + r.normal(0, scale * X.std(), X.shape)).astype(np.float32)


def neighbour_groups(X, k, seed=0):
    """MDAV-like groups of k nearby records (greedy: a random record and its k-1 nearest)."""
    r = np.random.default_rng(seed)
    free = np.ones(len(X), bool)
    sq = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    groups = []
    for i in r.permutation(len(X)):
        if free[i]:
            cand = np.flatnonzero(free)
            g = cand[np.argsort(sq[i, cand], kind="stable")[:k]]
            free[g] = False
            groups.append(g)
    return groups


def test_keys_are_all_present_and_floats(blobs):
    m = run(blobs, blobs[0].copy())
    assert tuple(m) == KEYS
    assert all(type(v) is float for v in m.values())


def test_identity_release_reveals_everything(blobs):
    m = run(blobs, blobs[0].copy())
    assert m["overlap"] == 1.0 and m["near_overlap"] == 1.0
    assert m["reconstruction_error"] == 0.0 and m["projection_robustness"] == pytest.approx(0.0, abs=1e-6)
    assert m["reidentification_rate"] == 1.0
    # labels are used: random linking within the released label, about 1 / class size
    assert m["reidentification_baseline"] == pytest.approx(CLASSES / N, rel=0.15)
    assert m["inversion_cosine"] > 0.99 and m["inversion_mse"] < 1e-6
    assert m["mia_auc"] > 0.8


def test_permutation_fools_the_study_metrics_but_not_the_attacks(blobs):
    X = blobs[0]
    perm = np.random.default_rng(5).permutation(D)
    m = run(blobs, X[:, perm])
    # the study's metrics call this private and harmless ...
    assert m["overlap"] == 0.0 and m["near_overlap"] == 0.0
    assert m["projection_robustness"] == pytest.approx(0.0, abs=1e-4)
    assert m["reconstruction_error"] > X.var()
    # ... the attacks undo it
    assert m["reidentification_rate"] >= 0.95
    assert m["inversion_cosine"] > 0.95
    assert m["mia_auc"] > 0.8


def test_rotation_is_undone_by_procrustes(blobs):
    X = blobs[0]
    Q, _ = np.linalg.qr(np.random.default_rng(6).normal(size=(D, D)))
    m = run(blobs, (X @ Q).astype(np.float32))
    mean_dist = pdist(X[:500]).mean()
    assert m["projection_robustness"] < 1e-3 * mean_dist
    assert m["overlap"] == 0.0
    assert m["reidentification_rate"] >= 0.95
    assert m["inversion_cosine"] > 0.95


def test_huge_noise_leaves_only_chance(blobs):
    X = blobs[0]
    m = run(blobs, noisy(X, 10.0))
    assert m["reidentification_rate"] < 5 * m["reidentification_baseline"] + 0.01
    assert abs(m["mia_auc"] - 0.5) < 0.1
    assert abs(m["inversion_cosine"]) < 0.2
    # the study's reconstruction error is just the noise variance (documented tautology)
    assert m["reconstruction_error"] == pytest.approx((10.0 * X.std()) ** 2, rel=0.05)


def test_reidentification_falls_with_noise(blobs):
    X = blobs[0]
    rates = [run(blobs, noisy(X, s))["reidentification_rate"] for s in (0.1, 1.0, 10.0)]
    baseline = 1 / N
    assert rates[0] >= 0.95
    assert 5 * baseline + 0.01 < rates[1] < 0.95  # moderate noise lies between
    assert rates[0] > rates[1] > rates[2]


def test_near_overlap_sees_tiny_noise_that_overlap_misses(blobs):
    m = run(blobs, noisy(blobs[0], 1e-4))
    assert m["overlap"] == 0.0
    assert m["near_overlap"] == 1.0
    assert m["reidentification_rate"] == 1.0


def test_group_means_are_linked_to_their_groups(blobs):
    X, y = blobs[0], blobs[1]
    groups = neighbour_groups(X, 5)
    X_rel = np.stack([X[g].mean(0) for g in groups]).astype(np.float32)
    y_rel = np.array([np.bincount(y[g]).argmax() for g in groups])
    m = run(blobs, X_rel, y_rel, groups=groups)
    assert m["reidentification_baseline"] == pytest.approx(5 * CLASSES / N, rel=0.2)  # 5 of a class
    assert m["reidentification_rate"] > 10 * m["reidentification_baseline"]
    assert m["overlap"] == 0.0
    # the target of a group mean is the group mean: the inversion recovers it
    assert m["inversion_cosine"] > 0.95
    # the study's error is measured against each member: the within-group spread
    assert m["reconstruction_error"] > 0.1


def test_rows_sharing_one_big_group_stay_cheap_and_exact(blobs):
    """MDAV/density_based style: every record replaced by its group mean, one group per row."""
    X, y = blobs[0], blobs[1]
    big = [np.arange(0, 600), np.arange(600, N)]
    groups = [big[0] if i < 600 else big[1] for i in range(N)]
    X_rel = np.stack([X[g].mean(0) for g in groups]).astype(np.float32)
    m = run(blobs, X_rel, groups=groups)
    brute = np.mean([((X_rel[j] - X[groups[j]]) ** 2).mean() for j in range(N)])
    assert m["reconstruction_error"] == pytest.approx(brute, rel=1e-5)
    chance = [max(len(g) / N, np.sum(y[g] == y[j]) / np.sum(y == y[j])) for j, g in enumerate(groups)]
    assert m["reidentification_baseline"] == pytest.approx(np.mean(chance), rel=0.05)  # random, within label
    # two released vectors: all rows of a group succeed or fail together
    assert any(abs(m["reidentification_rate"] - v) < 0.05 for v in (0.0, 0.4, 0.6, 1.0))
    # an aux pair reveals its whole group as members: no unknown member is left to test
    assert math.isnan(m["mia_auc"])


def test_reconstruction_error_averages_over_group_members():
    r = np.random.default_rng(4)
    X = r.normal(size=(30, 3))
    groups = [[0, 1, 2], [3], [4, 5], [0, 1, 2], []]
    X_rel = r.normal(size=(5, 3))
    pairs = build_pairs(30, 5, groups)
    brute = np.mean([((X_rel[j] - X[g]) ** 2).mean() for j, g in enumerate(groups) if g])
    assert reconstruction_error(X, X_rel, pairs, 100, r) == pytest.approx(brute)
    assert pairs.in_group(np.array([1, 3, 1]), pairs.row_group[[3, 1, 1]]).tolist() == [True, True, False]
    overlapping = build_pairs(30, 2, [[0, 1], [1, 2]])
    assert overlapping.in_group(np.array([1, 1, 0]), np.array([0, 1, 1])).tolist() == [True, True, False]


def test_tiny_scale_embeddings_under_huge_noise_are_not_linked(blobs):
    """Distances dominated by a huge noise vector must not tie (float32 rounding would make
    every original look equally near, and ties count as re-identifications)."""
    X, y, Xc, _ = blobs
    X, Xc = X * 1e-4, Xc * 1e-4
    noise = np.random.default_rng(8).normal(0, 1.0, X.shape)  # 10^4 x the data scale
    m = evaluate(X, y, (X + noise).astype(np.float32), y, X_control=Xc)
    assert m["reidentification_rate"] < 5 * m["reidentification_baseline"] + 0.01
    assert abs(m["mia_auc"] - 0.5) < 0.1
    m = evaluate(X, y, X.copy(), y, X_control=Xc)
    assert m["reidentification_rate"] == 1.0 and m["mia_auc"] > 0.8


def test_independent_release_tells_nothing_about_members(blobs):
    X, y, _, centers = blobs
    fresh = (centers[y] + np.random.default_rng(9).normal(0, 1, X.shape)).astype(np.float32)
    m = run(blobs, fresh)
    assert abs(m["mia_auc"] - 0.5) < 0.1
    assert m["reidentification_rate"] < 5 * m["reidentification_baseline"] + 0.01


def test_projection_is_linked_in_release_space(blobs):
    X = blobs[0]
    P = np.random.default_rng(7).normal(size=(D, 8)) / math.sqrt(8)
    m = run(blobs, (X @ P).astype(np.float32))
    assert m["overlap"] == 0.0
    assert math.isnan(m["near_overlap"]) and math.isnan(m["reconstruction_error"])
    assert m["reidentification_rate"] >= 0.95  # the attacker projects the originals itself
    assert m["mia_auc"] > 0.8
    assert 0.0 < m["inversion_cosine"] < 1.0 and m["inversion_mse"] > 0.0


def test_no_control_set_means_no_membership_metric(blobs):
    m = run(blobs, blobs[0].copy(), X_control=None)
    assert math.isnan(m["mia_auc"])
    assert m["reidentification_rate"] == 1.0


def test_synthetic_release_without_sources(blobs):
    X, y, _, centers = blobs
    synth = (centers[y[:300]] + np.random.default_rng(3).normal(0, 1, (300, D))).astype(np.float32)
    m = run(blobs, synth, y[:300])  # groups=None and m != n: no correspondence
    for key in ("reconstruction_error", "reidentification_rate", "reidentification_baseline",
                "inversion_mse", "inversion_cosine"):
        assert math.isnan(m[key]), key
    assert m["overlap"] == 0.0 and m["near_overlap"] == 0.0
    assert abs(m["mia_auc"] - 0.5) < 0.15  # identity view only, fresh samples


def test_deterministic_per_seed(blobs):
    X, y, Xc, _ = blobs
    X_rel = noisy(X, 1.0)
    a = evaluate(X, y, X_rel, y, X_control=Xc, seed=3)
    b = evaluate(X, y, X_rel, y, X_control=Xc, seed=3)
    assert a == b
    c = evaluate(X, y, X_rel, y, X_control=Xc, seed=4)
    assert c["reidentification_rate"] != a["reidentification_rate"] or c["mia_auc"] != a["mia_auc"]


def test_overlap_is_a_fraction_of_exact_copies():
    r = np.random.default_rng(0)
    X = r.normal(size=(50, 4)).astype(np.float32)
    X_rel = X.copy()
    X_rel[::2] += 1e-3
    assert overlap(X, X_rel) == 0.5
    Z = np.zeros((2, 3), np.float32)
    assert overlap(Z, -Z) == 1.0  # -0.0 == 0.0
    assert overlap(X, X_rel.astype(np.float64)) == 0.5
    assert overlap(X, X[:, :3]) == 0.0


def test_chunked_geometry_matches_brute_force(monkeypatch):
    monkeypatch.setattr(geometry, "MAX_CHUNK_BYTES", 4096)  # forces many chunks
    r = np.random.default_rng(1)
    A, B = r.normal(size=(70, 5)), r.normal(size=(90, 5))
    full = np.sqrt(((A[:, None] - B[None]) ** 2).sum(-1))
    dist, idx = geometry.knn(A, B, 3, torch.device("cpu"))
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :3])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :3], rtol=1e-5)
    _, idx = geometry.knn(B, B, 1, torch.device("cpu"), exclude=np.arange(90))
    self_full = np.sqrt(((B[:, None] - B[None]) ** 2).sum(-1)) + np.diag(np.full(90, np.inf))
    np.testing.assert_array_equal(idx[:, 0], self_full.argmin(1))
    assert geometry.mean_pairwise_distance(A, torch.device("cpu")) == pytest.approx(pdist(A).mean(), rel=1e-5)


def test_large_inputs_use_sampling_and_chunks():
    r = np.random.default_rng(2)
    X = r.normal(size=(20_000, 16)).astype(np.float32)
    y = r.integers(0, 10, 20_000)
    Xc = r.normal(size=(2_000, 16)).astype(np.float32)
    t0 = time.perf_counter()
    m = evaluate(X, y, noisy(X, 0.05), y, X_control=Xc, max_samples=2000, seed=0)
    assert time.perf_counter() - t0 < 30
    assert all(type(v) is float for v in m.values())
    assert m["reidentification_rate"] > 0.5


def test_rejects_bad_inputs(blobs):
    X, y, _, _ = blobs
    with pytest.raises(ValueError, match="groups"):
        evaluate(X, y, X[:10], y[:10], groups=[[0]] * 9)
    with pytest.raises(ValueError, match="NaN"):
        bad = X.copy()
        bad[0, 0] = np.nan
        evaluate(X, y, bad, y)
    with pytest.raises(ValueError, match="aux_fraction"):
        evaluate(X, y, X, y, aux_fraction=1.0)
    with pytest.raises(ValueError, match="group indices"):
        evaluate(X, y, X[:1], y[:1], groups=[[N]])
