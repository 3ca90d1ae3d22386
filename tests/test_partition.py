"""Tests for fedsim.data.partition: partitioner registry and split_like."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.data import PARTITIONERS, partition, split_like

RNG = np.random.default_rng(123)
LABELS = np.repeat(np.arange(10), 600)[RNG.permutation(6000)]  # 10 balanced classes, shuffled
TEST_LABELS = np.repeat(np.arange(10), 100)[RNG.permutation(1000)]


def _check_disjoint(parts, n, cover=True):
    for p in parts:
        assert p.dtype == np.int64 and p.ndim == 1
        assert np.all(np.diff(p) > 0)  # sorted, no duplicates
    allidx = np.concatenate(parts)
    assert len(np.unique(allidx)) == len(allidx)  # disjoint
    assert allidx.min() >= 0 and allidx.max() < n
    if cover:
        assert len(allidx) == n


def _hist(parts, labels, k=10):
    return np.stack([np.bincount(labels[p], minlength=k) for p in parts])


def test_registry():
    assert set(PARTITIONERS) == {"iid", "dirichlet", "shards"}


def test_iid():
    parts = partition("iid", LABELS, 7, seed=0)
    assert len(parts) == 7
    _check_disjoint(parts, len(LABELS))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    ("method", "params"),
    [("iid", {}), ("dirichlet", {"alpha": 0.5}), ("dirichlet", {"alpha": 0.5, "self_balancing": True}),
     ("shards", {"classes_per_client": 2})],
)
def test_determinism_and_seed_sensitivity(method, params):
    a = partition(method, LABELS, 8, seed=42, **params)
    b = partition(method, LABELS, 8, seed=42, **params)
    c = partition(method, LABELS, 8, seed=43, **params)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("self_balancing", [False, True])
def test_dirichlet_disjoint_cover(self_balancing):
    parts = partition("dirichlet", LABELS, 10, seed=1, alpha=0.3, self_balancing=self_balancing)
    _check_disjoint(parts, len(LABELS))


def test_dirichlet_alpha_controls_skew():
    def skew(alpha):
        h = _hist(partition("dirichlet", LABELS, 10, seed=5, alpha=alpha), LABELS).astype(float)
        p = h / h.sum(axis=1, keepdims=True)
        return np.abs(p - 0.1).sum(axis=1).mean()  # mean L1 distance of client label mix to uniform

    small, large = skew(0.1), skew(1000.0)
    assert small > 0.8
    assert large < 0.05
    h = _hist(partition("dirichlet", LABELS, 10, seed=5, alpha=1000.0), LABELS)
    assert h.min() > 0


def test_dirichlet_self_balancing_evens_sizes():
    plain = [len(p) for p in partition("dirichlet", LABELS, 10, seed=2, alpha=0.3, min_partition_size=0)]
    bal = [len(p) for p in partition("dirichlet", LABELS, 10, seed=2, alpha=0.3, self_balancing=True, min_partition_size=0)]
    assert np.std(bal) < np.std(plain)


def test_dirichlet_min_partition_size():
    # alpha=0.1 over 20 clients leaves some client with < 20 samples for most seeds unless redrawn
    unconstrained = [min(map(len, partition("dirichlet", LABELS, 20, seed=s, alpha=0.1, min_partition_size=0))) for s in range(10)]
    assert min(unconstrained) < 20
    for seed in range(10):
        parts = partition("dirichlet", LABELS, 20, seed=seed, alpha=0.1, min_partition_size=20)
        assert min(len(p) for p in parts) >= 20
        _check_disjoint(parts, len(LABELS))
    with pytest.raises(ValueError, match="min_partition_size"):
        partition("dirichlet", LABELS, 50, seed=0, alpha=0.05, min_partition_size=110)
    with pytest.raises(ValueError, match="min_partition_size"):
        partition("dirichlet", LABELS, 10, seed=0, alpha=1.0, min_partition_size=601)


@pytest.mark.parametrize(("clients", "cpc"), [(10, 2), (5, 2), (7, 3), (20, 1), (4, 10)])
def test_shards(clients, cpc):
    parts = partition("shards", LABELS, clients, seed=3, classes_per_client=cpc)
    _check_disjoint(parts, len(LABELS), cover=True)  # clients * cpc >= 10 classes: nothing dropped
    h = _hist(parts, LABELS)
    assert np.all((h > 0).sum(axis=1) == cpc)
    for c in range(10):  # each class split evenly among its holders
        held = h[:, c][h[:, c] > 0]
        assert held.max() - held.min() <= 1


def test_shards_too_few_slots_drops_classes():
    parts = partition("shards", LABELS, 3, seed=0, classes_per_client=2)
    _check_disjoint(parts, len(LABELS), cover=False)
    h = _hist(parts, LABELS)
    assert np.all((h > 0).sum(axis=1) == 2)
    assert (h.sum(axis=0) > 0).sum() == 6


def test_split_like_matches_train_mix():
    train_parts = partition("dirichlet", LABELS, 8, seed=9, alpha=0.3)
    test_parts = split_like(LABELS, train_parts, TEST_LABELS, seed=9)
    assert len(test_parts) == 8
    _check_disjoint(test_parts, len(TEST_LABELS))
    train_h, test_h = _hist(train_parts, LABELS), _hist(test_parts, TEST_LABELS)
    quota = train_h * (100 / 600)  # exact proportional share of each class's 100 test samples
    assert np.all(np.abs(test_h - quota) < 1)  # largest-remainder rounding
    np.testing.assert_array_equal(test_h.sum(axis=0), 100)
    for tr, te in zip(train_h, test_h):
        assert np.corrcoef(tr, te)[0, 1] > 0.95
    again = split_like(LABELS, train_parts, TEST_LABELS, seed=9)
    assert all(np.array_equal(x, y) for x, y in zip(test_parts, again))


def test_split_like_shards_keeps_classes():
    train_parts = partition("shards", LABELS, 4, seed=0, classes_per_client=2)  # 8 slots, 2 classes unused
    test_parts = split_like(LABELS, train_parts, TEST_LABELS, seed=0)
    _check_disjoint(test_parts, len(TEST_LABELS), cover=False)
    train_h, test_h = _hist(train_parts, LABELS), _hist(test_parts, TEST_LABELS)
    np.testing.assert_array_equal(train_h > 0, test_h > 0)


@pytest.mark.parametrize(
    ("method", "n", "params", "word"),
    [
        ("nope", 2, {}, "iid"),
        ("iid", 0, {}, "num_partitions"),
        ("iid", 6001, {}, "num_partitions"),
        ("iid", 2.5, {}, "num_partitions"),
        ("iid", 2, {"alpha": 1.0}, "alpha"),
        ("dirichlet", 2, {}, "alpha"),
        ("dirichlet", 2, {"alpha": 0.0}, "alpha"),
        ("dirichlet", 2, {"alpha": -1}, "alpha"),
        ("dirichlet", 2, {"alpha": 1.0, "min_partition_size": -1}, "min_partition_size"),
        ("dirichlet", 2, {"alpha": 1.0, "self_balancing": "yes"}, "self_balancing"),
        ("dirichlet", 2, {"alpha": 1.0, "beta": 2}, "beta"),
        ("shards", 2, {"classes_per_client": 0}, "classes_per_client"),
        ("shards", 2, {"classes_per_client": 11}, "classes_per_client"),
        ("shards", 2, {}, "classes_per_client"),
    ],
)
def test_bad_params(method, n, params, word):
    with pytest.raises(ValueError, match=word):
        partition(method, LABELS, n, seed=0, **params)


def test_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        partition("iid", np.zeros((4, 2), dtype=int), 2, seed=0)
    with pytest.raises(ValueError, match="labels"):
        partition("iid", np.array([0.5, 1.5]), 2, seed=0)
