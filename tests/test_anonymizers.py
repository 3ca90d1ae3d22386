"""Anonymizers on small synthetic data: the contract for every method, then known truths
per method (keyed transforms shared by clients, PCA from statistics, DP calibration,
k-anonymity, k-means against scikit-learn, DBSCAN, conditional GAN)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsim import anonymizers
from fedsim.anonymizers import _ops
from fedsim.anonymizers.keyed import PCAAnonymizer
from fedsim.anonymizers.noise import analytic_delta, analytic_gaussian_sigma, classical_gaussian_sigma

PARAMS = {
    "none": {},
    "permutation": {},
    "random": {"noise_scale": 0.5},
    "laplace": {"noise_scale": 0.3},
    "gaussian": {"noise_scale": 0.2, "relative": True},
    "dp_gaussian": {"epsilon": 4.0, "delta": 1e-5},
    "random_projection": {"n_components": 16, "kind": "orthogonal"},
    "pca": {"n_components": 8, "device": "cpu"},
    "kmeans": {"n_clusters": 40, "noise_scale": 0.05, "device": "cpu"},
    "density_based": {"max_dist": 6.0, "min_samples": 3, "noise_scale": 0.05, "noise_policy": "perturb"},
    "mdav": {"k": 5, "device": "cpu"},
    "gan": {"n_epochs": 2, "device": "cpu"},
}
#: methods whose output depends on the client's seed
RANDOM = {"random", "laplace", "gaussian", "dp_gaussian", "kmeans", "density_based", "gan"}
#: methods that pass queries through unchanged (with the PARAMS above)
QUERIES_UNCHANGED = {"none", "mdav", "gan"}


def blobs(n=600, d=32, classes=10, spread=5.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, spread, (classes, d))
    y = np.arange(n) % classes
    rng.shuffle(y)
    return (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def data():
    X, y = blobs(700)
    return X[:600], y[:600], X[600:]


def run(name, X, y, Q, seed=1, key=2, **extra):
    anon = anonymizers.create(name, seed=seed, key=key, **{**PARAMS[name], **extra})
    anon.check_data(*X.shape)
    assert anon.fit(X, y) is anon
    X_rel, y_rel = anon.release(X, y)
    return anon, X_rel, y_rel, anon.transform_queries(Q)


def test_registry_lists_every_method():
    assert set(anonymizers.REGISTRY) == set(PARAMS)


@pytest.mark.parametrize("name", list(PARAMS))
def test_contract(name, data):
    X, y, Q = data
    anon, X_rel, y_rel, Q_rel = run(name, X, y, Q)
    assert X_rel.dtype == np.float32 and y_rel.dtype == np.int64 and Q_rel.dtype == np.float32
    assert X_rel.ndim == 2 and X_rel.shape[1] == Q_rel.shape[1] and len(X_rel) == len(y_rel) > 0
    assert Q_rel.shape[0] == len(Q)
    assert set(np.unique(y_rel)) <= set(np.unique(y))
    assert anon.reveals_originals == (name == "none")
    info = anon.release_info_
    assert info["n_released"] == len(X_rel)
    assert all(isinstance(v, (int, float)) for v in info.values())
    if anon.groups_ is None:
        assert len(X_rel) == len(X)  # per-record: row i from X[i]
    else:
        assert len(anon.groups_) == len(X_rel)
        assert all(0 <= g.min() and g.max() < len(X) for g in anon.groups_ if len(g))
    if name in QUERIES_UNCHANGED:
        np.testing.assert_array_equal(Q_rel, Q)
    elif Q_rel.shape == Q.shape and name != "permutation":
        assert not np.allclose(Q_rel, Q)

    # deterministic per seed; other seeds differ where the method is random
    _, X_again, y_again, Q_again = run(name, X, y, Q)
    np.testing.assert_array_equal(X_again, X_rel)
    np.testing.assert_array_equal(y_again, y_rel)
    np.testing.assert_array_equal(Q_again, Q_rel)
    _, X_other, _, _ = run(name, X, y, Q, seed=99)
    if name in RANDOM:
        assert X_other.shape != X_rel.shape or not np.array_equal(X_other, X_rel)
    else:
        np.testing.assert_array_equal(X_other, X_rel)

    # nothing but `none` releases an original row
    if X_rel.shape[1] == X.shape[1]:
        nearest = np.sqrt(((X_rel[:, None, :] - X[None]) ** 2).sum(-1)).min(1)
        if name == "none":
            assert nearest.max() == 0
        else:
            assert nearest.min() > 1e-3


@pytest.mark.parametrize("name, params, message", [
    ("gaussian", {"noise_scale": -0.1}, r"noise_scale must be in \(0, inf\)"),
    ("random", {"noise_scale": 0}, "noise_scale"),
    ("laplace", {"noise_scale": "big"}, "noise_scale must be a number"),
    ("gaussian", {"noise_scale": 0.1, "relative": "yes"}, "relative must be true or false"),
    ("pca", {"n_components": 0}, r"n_components must be an integer in \[1, inf\)"),
    ("random_projection", {"n_components": 4, "kind": "sparse"}, "kind must be one of"),
    ("mdav", {"k": 1}, r"k must be an integer in \[2, inf\)"),
    ("dp_gaussian", {"epsilon": 0}, r"epsilon must be in \(0, inf\)"),
    ("dp_gaussian", {"epsilon": 1, "delta": 1.5}, r"delta must be in \(0, 1\)"),
    ("dp_gaussian", {"epsilon": 1, "clip_norm": -1}, "clip_norm"),
    ("kmeans", {"n_clusters": 5, "assign_labels": "mean"}, "assign_labels must be one of 'majority', 'centroid'"),
    ("kmeans", {"n_clusters": 0}, "n_clusters"),
    ("kmeans", {"n_clusters": 5, "noise_scale": -1}, "noise_scale"),
    ("density_based", {"max_dist": 1.0, "min_samples": 1}, "min_samples"),
    ("density_based", {"max_dist": 1.0, "noise_policy": "keep"}, "noise_policy"),
    ("density_based", {"max_dist": "adaptive"}, r"max_dist must be 'auto' .* or a number in \(0, inf\)"),
    ("density_based", {"max_dist": -2.0}, r"max_dist must be 'auto' .* or a number in \(0, inf\)"),
    ("density_based", {"max_dist": True}, r"max_dist must be 'auto'"),
    ("density_based", {"radius_quantile": 0}, r"radius_quantile must be in \(0, 1\]"),
    ("density_based", {"radius_quantile": 1.5}, r"radius_quantile must be in \(0, 1\]"),
    ("density_based", {"radius_quantile": "median"}, r"radius_quantile must be a number in \(0, 1\]"),
    ("density_based", {"radius_k": 0}, r"radius_k must be an integer in \[1, inf\)"),
    ("density_based", {"max_dist": 3.0, "radius_quantile": 0.3}, "radius_quantile applies only with max_dist = 'auto'"),
    ("density_based", {"max_dist": 3.0, "radius_k": 4}, "radius_k applies only with max_dist = 'auto'"),
    ("gan", {"lr": 0}, "lr"),
    ("gan", {"device": "tpu"}, "device"),
    ("gaussian", {"noise_scale": 0.1, "sigma": 1}, "unknown parameter 'sigma'"),
    ("kmeans", {}, "needs parameter 'n_clusters'"),
    ("blur", {}, "unknown anonymizer 'blur'"),
])
def test_parameters_are_validated_at_construction(name, params, message):
    with pytest.raises(ValueError, match=message):
        anonymizers.create(name, **params)
    with pytest.raises(ValueError):
        anonymizers.validate(name, params)


@pytest.mark.parametrize("name, params, message", [
    ("pca", {"n_components": 64}, r"n_components must be in \[1, 32\]"),
    ("random_projection", {"n_components": 33}, r"n_components must be in \[1, 32\]"),
    ("kmeans", {"n_clusters": 1000}, r"n_clusters must be in \[1, 600\]"),
    ("mdav", {"k": 601}, r"k must be in \[2, 600\]"),
    ("density_based", {"max_dist": 1.0, "min_samples": 700}, r"min_samples must be in \[2, 600\]"),
    ("density_based", {"radius_k": 600}, r"radius_k must be in \[1, 599\]"),
])
def test_data_dependent_checks(name, params, message, data):
    X, y, _ = data
    anon = anonymizers.create(name, **params)
    with pytest.raises(ValueError, match=message):
        anon.check_data(*X.shape)
    with pytest.raises(ValueError, match=message):
        anon.fit(X, y)


def test_release_before_fit_is_an_error(data):
    X, y, _ = data
    with pytest.raises(RuntimeError, match="call fit"):
        anonymizers.create("gaussian", noise_scale=1).release(X, y)


def one_nn_accuracy(X, y, Q, yq):
    d = ((Q[:, None, :] - X[None]) ** 2).sum(-1)
    return float((y[d.argmin(1)] == yq).mean())


# --- keyed transforms -------------------------------------------------------------------

def test_permutation_is_shared_by_key_and_keeps_knn_accuracy():
    X, y = blobs(800, d=64, spread=1.0)
    a = anonymizers.create("permutation", seed=1, key=42).fit(X[:400], y[:400])
    b = anonymizers.create("permutation", seed=2, key=42).fit(X[400:], y[400:])
    c = anonymizers.create("permutation", seed=1, key=43).fit(X[:400], y[:400])
    np.testing.assert_array_equal(a.permutation_, b.permutation_)
    assert not np.array_equal(a.permutation_, c.permutation_)
    assert not np.array_equal(a.permutation_, np.arange(64))
    X_rel, y_rel = a.release(X[:400], y[:400])
    clean = one_nn_accuracy(X[:400], y[:400], X[400:], y[400:])
    assert one_nn_accuracy(X_rel, y_rel, b.transform_queries(X[400:]), y[400:]) == clean


def test_random_projection_is_shared_and_orthogonal_full_rank_is_an_isometry(data):
    X, y, Q = data
    a = anonymizers.create("random_projection", n_components=32, kind="orthogonal", seed=1, key=5).fit(X, y)
    b = anonymizers.create("random_projection", n_components=32, kind="orthogonal", seed=2, key=5).fit(Q, None)
    np.testing.assert_array_equal(a.projection_, b.projection_)
    R = a.projection_.astype(np.float64)
    np.testing.assert_allclose(R.T @ R, np.eye(32), atol=1e-5)
    X_rel, _ = a.release(X, y)
    np.testing.assert_allclose(np.linalg.norm(X_rel[1:] - X_rel[:-1], axis=1),
                               np.linalg.norm(X[1:] - X[:-1], axis=1), rtol=1e-4)


def test_pca_full_rank_preserves_distances_and_basis_is_sorted(data):
    X, y, _ = data
    pca = anonymizers.create("pca", n_components=32, device="cpu").fit(X, y)
    X_rel, _ = pca.release(X, y)
    np.testing.assert_allclose(np.linalg.norm(X_rel[1:] - X_rel[:-1], axis=1),
                               np.linalg.norm(X[1:] - X[:-1], axis=1), rtol=1e-4)
    assert np.all(np.diff(pca.explained_variance_) <= 0)
    comps = pca.components_
    np.testing.assert_allclose(comps @ comps.T, np.eye(32), atol=1e-10)
    assert np.all(comps[np.arange(32), np.abs(comps).argmax(1)] > 0)  # sign convention
    var = X_rel.astype(np.float64).var(0)
    np.testing.assert_allclose(var, pca.explained_variance_, rtol=1e-3)


def test_pca_from_statistics_of_two_halves_equals_the_whole(data):
    X, y, Q = data
    whole = anonymizers.create("pca", n_components=6, device="cpu").fit(X, y)
    stats = [PCAAnonymizer.statistics(X[:250], device="cpu"), PCAAnonymizer.statistics(X[250:], device="cpu")]
    fed = PCAAnonymizer.from_statistics(stats, n_components=6, device="cpu")
    np.testing.assert_allclose(fed.mean_, whole.mean_, atol=1e-9)
    np.testing.assert_allclose(fed.components_, whole.components_, atol=1e-7)
    # the federation path: clients share statistics, every client sets the same state
    assert anonymizers.needs_shared_state("pca") and not anonymizers.needs_shared_state("gaussian")
    clients = [anonymizers.create("pca", n_components=6, seed=i, key=3, device="cpu") for i in range(2)]
    shared_stats = [c.shared_statistics(part) for c, part in zip(clients, (X[:250], X[250:]))]
    state = anonymizers.combine_shared_state("pca", {"n_components": 6, "device": "cpu"}, shared_stats)
    for c, (lo, hi) in zip(clients, ((0, 250), (250, 600))):
        c.set_shared_state(state).fit(X[lo:hi], y[lo:hi])
        assert c.shared_basis_
    np.testing.assert_allclose(clients[0].transform_queries(Q), clients[1].transform_queries(Q), atol=1e-5)
    np.testing.assert_allclose(clients[0].transform_queries(Q), whole.transform_queries(Q), atol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        clients[0].set_basis(state["mean"], state["components"][:3])


def test_relative_noise_scales_with_each_feature():
    X, y = blobs(3000, d=8)
    X[:, 0] *= 10
    anon = anonymizers.create("laplace", noise_scale=0.5, relative=True, seed=1).fit(X, y)
    noise = anon.release(X, y)[0] - X
    np.testing.assert_allclose(noise.std(0), 0.5 * np.sqrt(2) * X.std(0), rtol=0.1)


# --- differential privacy ---------------------------------------------------------------

@pytest.mark.parametrize("epsilon, delta", [(0.5, 1e-5), (1.0, 1e-5), (4.0, 1e-6), (20.0, 1e-3)])
def test_analytic_sigma_is_the_smallest_that_satisfies_the_condition(epsilon, delta):
    sigma = analytic_gaussian_sigma(epsilon, delta, 2.0)
    assert analytic_delta(sigma, epsilon, 2.0) <= delta
    assert analytic_delta(0.99 * sigma, epsilon, 2.0) > delta


def test_analytic_sigma_beats_the_classical_bound():
    analytic = analytic_gaussian_sigma(1.0, 1e-5, 1.0)
    classical = classical_gaussian_sigma(1.0, 1e-5, 1.0)
    assert analytic < classical
    assert analytic == pytest.approx(3.73, abs=0.02)  # Balle & Wang 2018, Fig. 1 region


def test_dp_gaussian_clips_and_adds_noise_of_the_calibrated_scale():
    X, y = blobs(4000, d=64)
    anon = anonymizers.create("dp_gaussian", epsilon=2.0, delta=1e-5, clip_norm=1.5, seed=4).fit(X, y)
    X_rel, y_rel = anon.release(X, y)
    clipped = anon.clip(X)
    assert np.linalg.norm(clipped, axis=1).max() <= 1.5 * (1 + 1e-5)
    info = anon.release_info_
    assert info["sigma"] == pytest.approx(analytic_gaussian_sigma(2.0, 1e-5, 3.0))
    assert (info["epsilon"], info["delta"], info["clip_norm"]) == (2.0, 1e-5, 1.5)
    assert np.std(X_rel - clipped) == pytest.approx(info["sigma"], rel=0.05)
    np.testing.assert_array_equal(y_rel, y)
    Q_rel = anon.transform_queries(X[:500])
    assert np.std(Q_rel - clipped[:500]) == pytest.approx(info["sigma"], rel=0.05)
    assert not np.allclose(Q_rel, X_rel[:500])  # a separate noise stream for queries


# --- aggregating methods ------------------------------------------------------------------

def test_mdav_groups_are_k_anonymous_class_pure_means():
    X, y = blobs(1200, d=16, classes=4)
    X = np.concatenate([X, X[:3] + 0.1])  # a fifth class with 3 records: suppressed
    y = np.concatenate([y, [9, 9, 9]])
    anon = anonymizers.create("mdav", k=7, device="cpu").fit(X, y)
    X_rel, y_rel = anon.release(X, y)
    assert len(X_rel) == 1200 and anon.release_info_["n_suppressed"] == 3 and 9 not in y_rel
    sizes = np.array([len(g) for g in anon.groups_])
    assert sizes.min() >= 7 and sizes.max() <= 13
    for row, label, g in zip(X_rel, y_rel, anon.groups_):
        np.testing.assert_allclose(row, X[g].mean(0), atol=1e-5)
        assert np.all(y[g] == label)
    kept = np.flatnonzero(y != 9)
    assert all(i in g for i, g in zip(kept, anon.groups_))  # row i stands for record i


def naive_mdav(X, k):
    """Textbook MDAV on Python lists (the reference for the vectorised version)."""
    rest, groups = list(range(len(X))), []

    def take(i):
        d = ((X[rest] - X[i]) ** 2).sum(1)
        group = [rest[j] for j in np.argsort(d, kind="stable")[:k]]
        rest[:] = [j for j in rest if j not in group]
        groups.append(frozenset(group))

    def farthest(v):
        return rest[int(np.argmax(((X[rest] - v) ** 2).sum(1)))]

    while len(rest) >= 3 * k:
        r = farthest(X[rest].mean(0))
        take(r)
        take(farthest(X[r]))
    if len(rest) >= 2 * k:
        take(farthest(X[rest].mean(0)))
    if rest:
        groups.append(frozenset(rest))
    return set(groups)


@pytest.mark.parametrize("n, k", [(97, 3), (120, 4), (50, 7)])
def test_mdav_partition_matches_the_textbook_algorithm(n, k):
    from fedsim.anonymizers.mdav import mdav_partition

    X = np.random.default_rng(n).normal(size=(n, 12)).astype(np.float64)
    ours = {frozenset(g.tolist()) for g in mdav_partition(torch.from_numpy(X), k)}
    assert ours == naive_mdav(X, k)


def test_kmeans_matches_sklearn_inertia_with_same_init():
    from sklearn.cluster import KMeans

    X, _ = blobs(3000, d=32, classes=30, spread=2.0, seed=3)
    init = X[np.random.default_rng(0).choice(3000, 30, replace=False)]
    ref = KMeans(30, init=init, n_init=1, max_iter=10, tol=0, algorithm="lloyd").fit(X)
    Xt = torch.from_numpy(X)
    centers, _, d2, _ = _ops.lloyd(Xt, torch.from_numpy(init), 10)
    assert float(d2.double().sum()) == pytest.approx(ref.inertia_, rel=0.01)
    np.testing.assert_allclose(centers.numpy(), ref.cluster_centers_, atol=1e-4)
    # bf16 assignments may swap near-ties and so take another path; never a worse one by 1%
    _, _, d2, _ = _ops.lloyd(Xt, torch.from_numpy(init), 10, bf16=True)
    assert float(d2.double().sum()) <= 1.01 * ref.inertia_
    R = np.random.default_rng(1).standard_normal((2000, 64)).astype(np.float32)
    ref_r = KMeans(40, init=R[:40], n_init=1, max_iter=10, tol=0, algorithm="lloyd").fit(R)
    _, _, d2, _ = _ops.lloyd(torch.from_numpy(R), torch.from_numpy(R[:40]), 10, bf16=True)
    assert float(d2.double().sum()) == pytest.approx(ref_r.inertia_, rel=0.01)
    anon = anonymizers.create("kmeans", n_clusters=30, n_iter=10, device="cpu", seed=1).fit(X)
    assert anon.inertia_ <= 1.05 * ref.inertia_


def test_lloyd_reseeds_empty_clusters_and_kmeanspp_seeds_are_distinct():
    X, _ = blobs(500, d=8, classes=5)
    Xt = torch.from_numpy(X)
    init = np.repeat(X[:1], 5, 0)  # identical centres: four clusters empty after one step
    _, labels, _, _ = _ops.lloyd(Xt, torch.from_numpy(init), 10)
    assert len(np.unique(labels.numpy())) == 5
    seeds = _ops.kmeans_plusplus(Xt, 50, np.random.default_rng(0), max_sample=200)
    assert len(np.unique(seeds.numpy())) == 50


def test_kmeans_labels_majority_and_centroid():
    # one cluster: 3 records of label 1 far out, 4 of label 0 on one side; the mean sits
    # next to a label-1 record, so the two policies disagree
    X = np.array([[0, 0], [0.2, 0], [0, 0.2], [0.2, 0.2], [1.5, 1.4], [3, 3], [3.2, 3]], np.float32)
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    for policy, expected in (("majority", 0), ("centroid", 1)):
        anon = anonymizers.create("kmeans", n_clusters=1, assign_labels=policy, device="cpu").fit(X, y)
        X_rel, y_rel = anon.release(X, y)
        np.testing.assert_allclose(X_rel[0], X.mean(0), atol=1e-6)
        assert y_rel.tolist() == [expected]
        np.testing.assert_array_equal(anon.groups_[0], np.arange(7))
        np.testing.assert_array_equal(anon.transform_queries(X), X)  # queries are never centroids


def test_kmeans_never_releases_a_single_record(data):
    X, y, _ = data
    anon = anonymizers.create("kmeans", n_clusters=300, device="cpu").fit(X, y)
    X_rel, _ = anon.release(X, y)
    assert min(len(g) for g in anon.groups_) >= 2
    for row, g in zip(X_rel, anon.groups_):
        np.testing.assert_allclose(row, X[g].mean(0), atol=1e-4)


def test_chunked_kernels_match_dense_computations(monkeypatch):
    monkeypatch.setattr(_ops, "rows_per_chunk", lambda n_cols, budget=0: 7)  # many ragged chunks
    X, _ = blobs(150, d=6, classes=3, spread=3.0, seed=5)
    X[1] = X[0]  # a duplicate: distance 0 to another record
    D = np.sqrt(((X[:, None, :].astype(np.float64) - X[None]) ** 2).sum(-1))
    data, indices, indptr, nn = _ops.radius_graph(torch.from_numpy(X), 2.5, 10**6)
    for i in range(len(X)):
        row = slice(indptr[i], indptr[i + 1])
        assert set(indices[row]) == set(np.flatnonzero(D[i] <= 2.5)) and i in indices[row]
        np.testing.assert_allclose(data[row], D[i, indices[row]], atol=1e-4)
        assert np.all(np.diff(data[row]) >= 0)  # sorted by distance, as scikit-learn wants
    np.testing.assert_allclose(nn, np.where(np.eye(len(X), dtype=bool), np.inf, D).min(1), atol=1e-4)
    C = X[::10]
    labels = _ops.assign(torch.from_numpy(X), torch.from_numpy(C))
    np.testing.assert_array_equal(labels.numpy(), ((X[:, None] - C[None]) ** 2).sum(-1).argmin(1))
    with pytest.raises(ValueError, match="choose a smaller max_dist"):
        _ops.radius_graph(torch.from_numpy(X), 100.0, 1000)


def test_density_based_finds_separated_blobs_and_hides_noise_points():
    from sklearn.cluster import DBSCAN

    X, y = blobs(500, d=8, classes=5, spread=10.0, seed=1)
    outliers = np.random.default_rng(2).normal(0, 60, (6, 8)).astype(np.float32)
    X, y = np.concatenate([X, outliers]), np.concatenate([y, [0, 1, 2, 3, 4, 0]])
    anon = anonymizers.create("density_based", max_dist=4.0, min_samples=5, device="cpu").fit(X, y)
    ref = DBSCAN(eps=4.0, min_samples=5).fit(X).labels_
    assert anon.radius_ == 4.0  # an absolute radius is used as given
    np.testing.assert_array_equal(anon.labels_ >= 0, ref >= 0)
    assert anon.labels_.max() + 1 == ref.max() + 1 == 5
    X_rel, y_rel = anon.release(X, y)  # drop: noise points left out
    assert anon.release_info_["n_noise"] == 6 and len(X_rel) == 500
    for row, g in zip(X_rel[:20], anon.groups_[:20]):
        np.testing.assert_allclose(row, X[g].mean(0), atol=1e-4)
    np.testing.assert_array_equal(y_rel, y[:500])  # pure clusters: the majority is the own label
    perturb = anonymizers.create("density_based", max_dist=4.0, min_samples=5, noise_policy="perturb",
                                 device="cpu").fit(X, y)
    X_rel, _ = perturb.release(X, y)
    moved = np.linalg.norm(X_rel[500:] - X[500:], axis=1)
    assert len(X_rel) == 506 and moved.min() > 0.5
    assert perturb.release_info_["radius"] == 4.0 and "radius_quantile" not in perturb.release_info_


def core_share(X, radius, k):
    """Share of records with at least k other records within radius (DBSCAN core points)."""
    from sklearn.neighbors import NearestNeighbors

    d, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)  # column 0: the record itself
    return float((d[:, k] <= radius).mean())


def test_adaptive_radius_keeps_the_core_share_at_any_size_and_scale():
    from sklearn.cluster import DBSCAN

    small, y_small = blobs(600, d=16, classes=5, spread=4.0, seed=1)
    large, y_large = blobs(4800, d=16, classes=5, spread=4.0, seed=1)
    fitted = {}
    for name, X, y in (("small", small, y_small), ("large", large, y_large), ("scaled", 10 * small, y_small)):
        anon = anonymizers.create("density_based", min_samples=4, radius_quantile=0.3, device="cpu").fit(X, y)
        fitted[name] = anon
        assert core_share(X, anon.radius_, 3) == pytest.approx(0.3, abs=0.005)  # the quantile's meaning
        ref = DBSCAN(eps=anon.radius_, min_samples=4).fit(X).labels_  # real DBSCAN at that radius
        np.testing.assert_array_equal(anon.labels_ >= 0, ref >= 0)
        anon.release(X, y)
        assert anon.release_info_["radius"] == anon.radius_ and anon.release_info_["radius_quantile"] == 0.3
    # more records of the same distribution: denser, so a smaller radius; a scaled copy: scaled radius
    assert fitted["large"].radius_ < 0.9 * fitted["small"].radius_
    assert fitted["scaled"].radius_ == pytest.approx(10 * fitted["small"].radius_, rel=1e-4)
    np.testing.assert_array_equal(fitted["scaled"].labels_, fitted["small"].labels_)
    # an absolute radius does not adapt: the small set's radius makes most large-set records core
    assert core_share(large, fitted["small"].radius_, 3) > 0.6
    # the default: half the records are core points, radius_k = min_samples - 1
    default = anonymizers.create("density_based", device="cpu").fit(large, y_large)
    assert default.max_dist == "auto" and core_share(large, default.radius_, 4) == pytest.approx(0.5, abs=0.005)
    k2 = anonymizers.create("density_based", min_samples=4, radius_k=1, device="cpu").fit(large, y_large)
    assert core_share(large, k2.radius_, 1) == pytest.approx(0.5, abs=0.005)


def test_adaptive_radius_from_a_sample_of_a_large_client(monkeypatch):
    from fedsim.anonymizers.clustering import DensityBased

    X, y = blobs(3000, d=16, classes=5, spread=4.0, seed=2)
    exact = anonymizers.create("density_based", min_samples=3, device="cpu").fit(X, y).radius_
    monkeypatch.setattr(DensityBased, "KDIST_SAMPLE", 1000)
    a = anonymizers.create("density_based", min_samples=3, device="cpu", seed=5).fit(X, y)
    b = anonymizers.create("density_based", min_samples=3, device="cpu", seed=5).fit(X, y)
    assert a.radius_ == b.radius_ == pytest.approx(exact, rel=0.03)  # seeded: the same sample


def test_adaptive_radius_with_duplicates_stays_positive():
    X = np.repeat(blobs(40, d=4, classes=2, seed=3)[0], 5, axis=0)  # every record 5 times
    y = np.zeros(len(X), np.int64)
    anon = anonymizers.create("density_based", min_samples=3, radius_quantile=0.5, device="cpu").fit(X, y)
    assert anon.radius_ > 0 and (anon.labels_ >= 0).all()


def test_gan_labels_follow_the_requested_distribution_and_class_means():
    X, y = blobs(1000, d=32, classes=5, seed=4)
    y[:100] = 0  # unequal histogram
    X[:100] = X[np.flatnonzero(y == 0)[-1]] + np.random.default_rng(0).normal(0, 1, (100, 32))
    anon = anonymizers.create("gan", n_epochs=40, lr=1e-3, device="cpu", seed=3).fit(X, y)
    X_rel, y_rel = anon.release(X, y)
    np.testing.assert_array_equal(np.bincount(y_rel), np.bincount(y))
    assert all(len(g) == 0 for g in anon.groups_)  # synthetic rows, no source
    real = np.stack([X[y == c].mean(0) for c in range(5)])
    synth = np.stack([X_rel[y_rel == c].mean(0) for c in range(5)])
    dist = np.linalg.norm(synth[:, None] - real[None], axis=-1)
    np.testing.assert_array_equal(dist.argmin(1), np.arange(5))
    balanced = anonymizers.create("gan", n_epochs=1, n_samples=503, sample_labels="balanced",
                                  device="cpu").fit(X, y)
    _, y_bal = balanced.release(X, y)
    assert len(y_bal) == 503 and sorted(np.bincount(y_bal)) == [100, 100, 101, 101, 101]
