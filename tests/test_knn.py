"""The torch kNN agrees with scikit-learn and stays exact when chunked."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from fedsim.classifiers import KNNClassifier, create


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
