"""The kNN agrees with scikit-learn and stays exact when chunked, on every search path;
``auto`` picks a calibrated path and keeps the calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from fedsim.classifiers import KNNClassifier, create, search
from fedsim.device import CPU_FEATURES, cpu_info, cpu_kind


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 16)) * 3
    y = rng.integers(0, 5, size=600)
    X = (centers[y] + rng.normal(size=(600, 16))).astype(np.float32)
    return X[:500], y[:500], X[500:], y[500:]


def test_euclidean_matches_sklearn(blobs):
    X, y, Q, qy = blobs
    ours = KNNClassifier(k=5, metric="euclidean").fit(X, y)
    ref = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(X, y)
    d, i = ours.kneighbors(Q)
    rd, ri = ref.kneighbors(Q)
    np.testing.assert_allclose(d, rd, rtol=1e-4, atol=1e-4)
    assert (i == ri).mean() > 0.99
    assert (ours.predict(Q) == ref.predict(Q)).mean() > 0.99
    np.testing.assert_allclose(ours.predict_proba(Q), ref.predict_proba(Q), atol=1e-6)


def test_distance_weights_match_sklearn(blobs):
    X, y, Q, _ = blobs
    ours = KNNClassifier(k=7, metric="euclidean", weights="distance").fit(X, y)
    ref = KNeighborsClassifier(n_neighbors=7, weights="distance", algorithm="brute").fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(Q), ref.predict_proba(Q), atol=1e-4)


def test_cosine_matches_sklearn(blobs):
    X, y, Q, _ = blobs
    ours = KNNClassifier(k=5, metric="cosine").fit(X, y)
    ref = KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute").fit(X, y)
    assert (ours.predict(Q) == ref.predict(Q)).mean() > 0.99


def test_chunking_and_partial_fit_do_not_change_results(blobs):
    X, y, Q, qy = blobs
    whole = KNNClassifier(k=5).fit(X, y)
    chunked = KNNClassifier(k=5, max_chunk_bytes=4 * 500 * 7).fit(X[:200], y[:200]).partial_fit(X[200:], y[200:])
    np.testing.assert_array_equal(whole.predict(Q), chunked.predict(Q))
    assert whole.score(Q, qy) > 0.9


def test_non_contiguous_labels(blobs):
    X, y, Q, _ = blobs
    clf = KNNClassifier(k=3).fit(X, y * 10 + 7)
    assert set(clf.predict(Q)) <= set(y * 10 + 7)
    assert clf.predict_proba(Q).shape == (len(Q), 5)


@pytest.mark.parametrize("params, fragment", [
    ({"k": 0}, "k must be an integer >= 1"),
    ({"metric": "l1"}, "metric must be one of"),
    ({"weights": "rank"}, "weights must be one of"),
    ({"bogus": 1}, "unknown parameter 'bogus'"),
])
def test_bad_params(params, fragment):
    with pytest.raises(ValueError, match=fragment):
        create("knn", **params)


def test_unfitted_predict_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        KNNClassifier().predict(np.zeros((2, 3), np.float32))


# ------------------------------------------------------------------ paths and the auto choice
def offset_blobs(n_db=3000, n_q=300, d=48, offset=30.0, seed=0):
    """Not centred (like embeddings): |x|^2 is large, so |q|^2 - 2 q.x + |x|^2 in fp32 loses
    digits and would swap near-ties; exact re-ranking must not."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(8, d)) * 0.6 + offset
    y = rng.integers(0, 8, n_db + n_q)
    X = (centers[y] + rng.normal(size=(n_db + n_q, d))).astype(np.float32)
    return X[:n_db], y[:n_db], X[n_db:]


PATH_PARAMS = {"torch_fp32": {"backend": "torch", "precision": "fp32"}, "torch_bf16": {"precision": "bf16"},
               "faiss": {"backend": "faiss"}}


@pytest.mark.parametrize("path", search.PATHS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_every_path_gives_sklearns_neighbours(path, metric):
    if path == "faiss":
        pytest.importorskip("faiss")
    X, y, Q = offset_blobs()
    ours = KNNClassifier(k=5, metric=metric, **PATH_PARAMS[path]).fit(X, y)
    d, i = ours.kneighbors(Q)
    assert ours.search_path_ == path
    ref = KNeighborsClassifier(n_neighbors=5, metric=metric, algorithm="brute").fit(X.astype(np.float64), y)
    rd, ri = ref.kneighbors(Q.astype(np.float64))  # float64: the neighbours of exact arithmetic
    assert all(set(a) == set(b) for a, b in zip(i.tolist(), ri.tolist()))  # recall 1.0
    np.testing.assert_allclose(d, rd, rtol=1e-4, atol=1e-4)
    assert (np.diff(d, axis=1) >= 0).all()


def test_auto_picks_a_calibrated_path_and_caches_the_choice(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(search, "_CHOICES", {})
    calls = []
    real = search.calibrate
    monkeypatch.setattr(search, "calibrate", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    X, y, Q = offset_blobs(n_db=search.CALIBRATE_MIN_ROWS + 500, d=32)
    first = KNNClassifier(k=5, metric="euclidean").fit(X, y)
    first.predict(Q)
    expected = search.candidate_paths(first.X_.device, len(X), 5)
    assert "torch_fp32" in expected and first.search_path_ in expected
    assert first.search_choice_["source"] == "calibrated" and len(calls) == 1
    assert set(first.search_choice_["seconds"]) == set(expected)
    assert first.search_path_ == min(first.search_choice_["seconds"], key=first.search_choice_["seconds"].get)
    # the same shape again in this process: no new calibration; the answer is the same
    second = KNNClassifier(k=5, metric="euclidean").fit(X[:-100], y[:-100])
    second.predict(Q)
    assert len(calls) == 1 and second.search_path_ == first.search_path_
    # a new process (empty in-process cache) reads it from disk, keyed by CPU and torch version
    monkeypatch.setattr(search, "_CHOICES", {})
    third = KNNClassifier(k=5, metric="euclidean").fit(X, y)
    third.predict(Q)
    assert len(calls) == 1 and third.search_path_ == first.search_path_
    assert third.search_choice_["source"] == "disk"
    assert list((tmp_path / "knn-calibration").iterdir())
    np.testing.assert_array_equal(third.kneighbors(Q)[1], first.kneighbors(Q)[1])
    # the database changed: the path is chosen again (from the cache) with the new index
    third.partial_fit(X[:10], y[:10])
    assert not hasattr(third, "search_path_")
    third.predict(Q[:5])
    assert third.search_path_ == first.search_path_ and len(calls) == 1


def test_small_databases_and_single_candidates_are_not_calibrated(monkeypatch):
    monkeypatch.setattr(search, "calibrate", lambda *a, **kw: pytest.fail("calibrated"))
    X, y, Q = offset_blobs(n_db=search.CALIBRATE_MIN_ROWS - 1)
    clf = KNNClassifier().fit(X, y)
    clf.predict(Q)
    assert clf.search_path_ == "torch_fp32" and "rule" in clf.search_choice_
    X, y, Q = offset_blobs(n_db=search.CALIBRATE_MIN_ROWS + 1)
    assert KNNClassifier(precision="bf16").fit(X, y).predict(Q).shape == (len(Q),)


def test_candidates_follow_the_cpu_and_the_parameters(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(search, "bf16_autocast_ok", lambda device: False)  # an AVX2-only CPU
    assert "torch_bf16" not in search.candidate_paths(cpu, 50000, 5, 16)
    monkeypatch.setattr(search, "bf16_autocast_ok", lambda device: True)  # AVX512-BF16 / AMX
    paths = search.candidate_paths(cpu, 50000, 5, 16)
    assert paths[:2] == ["torch_fp32", "torch_bf16"] and ("faiss" in paths) == search.faiss_available()
    assert search.candidate_paths(cpu, 20, 5, 16) == ["torch_fp32"] + (["faiss"] if search.faiss_available() else [])
    assert search.candidate_paths(cpu, 50000, 5, 16, backend="torch") == ["torch_fp32", "torch_bf16"]
    assert search.candidate_paths(cpu, 50000, 5, 16, precision="bf16") == ["torch_bf16"]
    assert search.candidate_paths(cpu, 50000, 5, 16, backend="faiss") == ["faiss"]
    assert "torch_bf16" not in search.candidate_paths(cpu, 50000, 5, 16, precision="fp32")
    assert cpu_kind() in ("amx", "avx512_bf16", "avx512", "avx2", "other")
    assert set(cpu_info()["features"]) <= set(CPU_FEATURES)
