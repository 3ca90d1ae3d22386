"""The client-side pipeline without Flower: partitions, extraction, release."""

from __future__ import annotations

import numpy as np

from fedsim.clients.release import anonymize, client_data, client_indices, partition_params
from fedsim.config import load_scenario


def _scenario(write_scenario, *overrides):
    return load_scenario(write_scenario("[data]\ndataset = 'cifar10-mini'\n"), list(overrides))


def test_partitions_are_disjoint_and_queries_follow_the_train_mix(write_scenario):
    sc = _scenario(write_scenario, "partition.method=dirichlet", "partition.alpha=0.3")
    parts, queries = client_indices("cifar10-mini", "", False, "dirichlet", partition_params(sc), 3, sc.seed)
    assert sum(len(p) for p in parts) == 5000 and len(np.unique(np.concatenate(parts))) == 5000
    assert sum(len(q) for q in queries) == 1000 and len(np.unique(np.concatenate(queries))) == 1000
    from fedsim.data import load_dataset

    ytr, yte = load_dataset("cifar10-mini", None, "train").targets, load_dataset("cifar10-mini", None, "test").targets
    mixes = []
    for p, q in zip(parts, queries):
        train_mix = np.bincount(ytr[p], minlength=10) / len(p)
        query_mix = np.bincount(yte[q], minlength=10) / len(q)
        assert np.abs(train_mix - query_mix).sum() < 0.25
        mixes.append(train_mix)
    assert np.abs(mixes[0] - mixes[1]).sum() > 0.3  # dirichlet(0.3) is skewed


def test_client_data_and_release(write_scenario):
    sc = _scenario(write_scenario, "federation.num_clients=8")
    a = client_data(sc, 5, 8, progress=False)
    assert a.x_train.shape == (a.n_train, 256) == (625, 256)
    assert a.x_query.shape == (a.n_query, 256)
    np.testing.assert_array_equal(np.bincount(a.y_train, minlength=10), a.label_histogram)
    rel = anonymize(sc, a, "none", {})
    np.testing.assert_array_equal(rel.x_train, a.x_train)
    assert rel.metrics["reidentification_rate"] > 0.95
    assert rel.metrics["local_accuracy_loss"] == 0.0
