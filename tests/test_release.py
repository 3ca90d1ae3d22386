"""The client-side pipeline without Flower: partitions, extraction, release."""

from __future__ import annotations

import numpy as np

from fedsim.clients import release
from fedsim.clients.release import anonymize, client_data, scenario_indices
from fedsim.config import load_scenario


def _scenario(write_scenario, *overrides):
    return load_scenario(write_scenario("[data]\ndataset = 'cifar10-mini'\n"), list(overrides))


def test_partitions_are_disjoint_and_queries_follow_the_train_mix(write_scenario):
    sc = _scenario(write_scenario, "partition.method=dirichlet", "partition.params.alpha=0.3")
    parts, queries = scenario_indices(sc, 3)
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


def test_a_process_keeps_only_its_current_clients_embeddings(write_scenario):
    sc = _scenario(write_scenario, "federation.num_clients=16")
    first = client_data(sc, 3, 16, progress=False)
    assert client_data(sc, 3, 16, progress=False) is first  # the current client: kept
    other = client_data(sc, 4, 16, progress=False)
    assert [pid for (_, pid) in release._CURRENT] == [4] and other.partition_id == 4
    again = client_data(sc, 3, 16, progress=False)  # a revisit reads the embedding cache
    assert again is not first and again.embedding_cache == "hit"
    np.testing.assert_array_equal(again.x_train, first.x_train)
