"""Partitions: Flower Datasets' partitioners by name, fedsim's aliases, split_like, stored splits."""

from __future__ import annotations

import flwr_datasets.partitioner as fp
import numpy as np
import pytest
from datasets import Dataset
from PIL import Image

from fedsim.data import client_splits, load_dataset
from fedsim.data.partition import ALIASES, REGISTRY, partition, split_by_party, split_for_clients, split_like

RNG = np.random.default_rng(123)
LABELS = np.repeat(np.arange(10), 600)[RNG.permutation(6000)]  # 10 balanced classes, shuffled
SORTED = np.repeat(np.arange(10), 600)  # label-sorted, like an image folder
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


def test_every_flower_row_partitioner_is_registered_by_name():
    left_out = {"Partitioner", "IdToSizeFncPartitioner", "VerticalEvenPartitioner", "VerticalSizePartitioner"}
    assert set(fp.__all__) - left_out <= set(REGISTRY)
    assert set(ALIASES) == {"iid", "dirichlet", "shards", "natural_id"} <= set(REGISTRY)


@pytest.mark.parametrize("labels", [LABELS, SORTED])
def test_iid_is_flowers_iid_partitioner_on_shuffled_rows(labels):
    parts = partition("iid", labels, 7, seed=0)
    assert len(parts) == 7
    _check_disjoint(parts, len(labels))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert np.all(_hist(parts, labels) > 30)  # every client sees every class, even on label-sorted rows
    assert [np.array_equal(a, b) for a, b in zip(parts, partition("IidPartitioner", labels, 7, seed=0))] == [True] * 7


@pytest.mark.parametrize(("method", "params"), [
    ("iid", {}), ("dirichlet", {"alpha": 0.5}), ("dirichlet", {"alpha": 0.5, "self_balancing": True}),
    ("shards", {"num_classes_per_partition": 2}), ("PathologicalPartitioner", {"num_classes_per_partition": 3}),
    ("ShardPartitioner", {"num_shards_per_partition": 2}), ("LinearPartitioner", {}),
])
def test_same_seed_same_partitions(method, params):
    a = partition(method, LABELS, 8, 42, params)
    b = partition(method, LABELS, 8, 42, params)
    c = partition(method, LABELS, 8, 43, params)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_dirichlet_alpha_controls_skew_and_defaults_to_one_half():
    def skew(alpha):
        h = _hist(partition("dirichlet", LABELS, 10, 5, {"alpha": alpha}), LABELS).astype(float)
        p = h / h.sum(axis=1, keepdims=True)
        return np.abs(p - 0.1).sum(axis=1).mean()  # mean L1 distance of client label mix to uniform

    assert skew(0.1) > 0.8
    assert skew(1000.0) < 0.05
    default = partition("dirichlet", LABELS, 10, 5)
    named = partition("DirichletPartitioner", LABELS, 10, 5, {"alpha": 0.5})
    assert all(np.array_equal(x, y) for x, y in zip(default, named))
    _check_disjoint(default, len(LABELS))


def test_dirichlet_min_partition_size_and_self_balancing():
    for seed in range(5):
        parts = partition("dirichlet", LABELS, 20, seed, {"alpha": 0.1, "min_partition_size": 20})
        assert min(len(p) for p in parts) >= 20
        _check_disjoint(parts, len(LABELS))
    plain = [len(p) for p in partition("dirichlet", LABELS, 10, 2, {"alpha": 0.3, "min_partition_size": 0})]
    balanced = [len(p) for p in partition("dirichlet", LABELS, 10, 2,
                                          {"alpha": 0.3, "self_balancing": True, "min_partition_size": 0})]
    assert np.std(balanced) < np.std(plain)
    with pytest.raises(ValueError, match="attempts"):
        partition("dirichlet", LABELS, 50, 0, {"alpha": 0.05, "min_partition_size": 110})


@pytest.mark.parametrize(("clients", "per_client"), [(10, 2), (5, 2), (7, 3), (20, 1), (4, 10)])
def test_shards_k_classes_per_client_and_every_class_covered(clients, per_client):
    parts = partition("shards", LABELS, clients, 3, {"num_classes_per_partition": per_client})
    _check_disjoint(parts, len(LABELS), cover=True)  # clients * classes >= 10: nothing left out
    h = _hist(parts, LABELS)
    assert np.all((h > 0).sum(axis=1) == per_client)
    for c in range(10):  # each class split evenly among its holders
        held = h[:, c][h[:, c] > 0]
        assert held.max() - held.min() <= 1


@pytest.mark.filterwarnings("ignore:Classes")
def test_flowers_pathological_partitioner_leaves_classes_out_where_shards_does_not():
    """Why ``shards`` is fedsim's own partitioner: with fewer clients than classes, none of
    PathologicalPartitioner's class assignment modes covers every class."""
    ds = Dataset.from_dict({"label": LABELS})
    for mode in ("random", "first-deterministic", "deterministic"):
        covered = []
        for seed in range(5):
            p = fp.PathologicalPartitioner(num_partitions=5, partition_by="label", num_classes_per_partition=2,
                                           class_assignment_mode=mode, seed=seed)
            p.dataset = ds
            held = [p.load_partition(i).with_format("arrow")["label"].to_numpy() for i in range(5)]
            covered.append(len(np.unique(np.concatenate(held))))
        assert min(covered) < 10, mode
    for seed in range(5):
        assert len(np.unique(LABELS[np.concatenate(partition("shards", LABELS, 5, seed))])) == 10


def test_shards_with_too_few_slots_leaves_classes_out():
    parts = partition("shards", LABELS, 3, 0, {"num_classes_per_partition": 2})
    _check_disjoint(parts, len(LABELS), cover=False)
    h = _hist(parts, LABELS)
    assert np.all((h > 0).sum(axis=1) == 2) and (h.sum(axis=0) > 0).sum() == 6


@pytest.mark.parametrize(("method", "params", "sizes"), [
    ("SizePartitioner", {"partition_sizes": [1000, 2000, 3000]}, [1000, 2000, 3000]),
    ("InnerDirichletPartitioner", {"partition_sizes": [1000, 2000, 3000], "alpha": 0.5}, [1000, 2000, 3000]),
    ("LinearPartitioner", {}, [1000, 2000, 3000]),
    ("ShardPartitioner", {"num_shards_per_partition": 2}, [2000, 2000, 2000]),
    ("ContinuousPartitioner", {"strictness": 0.5}, [2000, 2000, 2000]),
    ("DistributionPartitioner", {"distribution_array": np.ones((10, 2)).tolist(),  # a TOML array of arrays
                                 "num_unique_labels_per_partition": 2, "preassigned_num_samples_per_label": 0},
     [600] * 10),
])
def test_flower_partitioners_by_name_with_toml_parameters(method, params, sizes):
    parts = partition(method, LABELS, len(sizes), 7, params)
    _check_disjoint(parts, len(LABELS), cover=False)
    assert [len(p) for p in parts] == sizes


def test_natural_id_makes_one_client_per_party_in_name_order():
    parties = np.array(["zeta", "alpha", "mu"])[np.arange(6000) % 3]
    parts = partition("natural_id", LABELS, 3, 0, parties=parties)
    assert [set(parties[p]) for p in parts] == [{"alpha"}, {"mu"}, {"zeta"}]
    _check_disjoint(parts, len(LABELS))
    groups = partition("GroupedNaturalIdPartitioner", LABELS, 2, 0, {"group_size": 2}, parties=parties)
    assert sorted(len(set(parties[p])) for p in groups) == [1, 2]
    with pytest.raises(ValueError, match=r"makes 3 partitions \(one per party\), and num_partitions = 4"):
        partition("natural_id", LABELS, 4, 0, parties=parties)
    with pytest.raises(ValueError, match="imagefolder-parties"):
        partition("natural_id", LABELS, 3, 0)


def test_split_by_party_gives_each_client_its_own_parties_queries():
    train_parties = np.array(["a", "b", "c"])[np.arange(60) % 3]
    test_parties = np.array(["c", "a", "d"])[np.arange(30) % 3]
    parts = [np.flatnonzero(train_parties == "a"), np.flatnonzero(train_parties != "a")]
    queries = split_by_party(train_parties, parts, test_parties)
    assert set(test_parties[queries[0]]) == {"a"} and set(test_parties[queries[1]]) == {"c"}  # d: nobody's


@pytest.mark.parametrize(("method", "n", "params", "message"), [
    ("nope", 2, {}, "unknown partitioner 'nope'; allowed: iid, dirichlet, shards, natural_id, IidPartitioner"),
    ("iid", 0, {}, "num_partitions must be an integer >= 1, got 0"),
    ("iid", 6001, {}, "num_partitions must be <= the number of samples (6000), got 6001"),
    ("iid", 2.5, {}, "num_partitions must be an integer >= 1, got 2.5"),
    ("iid", 2, {"alpha": 1.0}, "unknown parameter 'alpha' for partitioner 'iid'; allowed: none"),
    ("dirichlet", 2, {"beta": 2}, "unknown parameter 'beta' for partitioner 'dirichlet'; allowed: alpha, "
                                  "min_partition_size, self_balancing"),
    ("dirichlet", 2, {"alpha": 0.0}, "Alpha values should be strictly greater than zero"),
    ("dirichlet", 2, {"alpha": "high"}, "parameter 'alpha' = 'high' of partitioner 'dirichlet' must be a number"),
    ("dirichlet", 2, {"self_balancing": "yes"},
     "'self_balancing' = 'yes' of partitioner 'dirichlet' must be true or false"),
    ("dirichlet", 2, {"min_partition_size": 1.5}, "must be an integer"),
    ("dirichlet", 2, {"seed": 1}, "parameter 'seed' cannot be set in a scenario"),
    ("iid", 2, {"num_partitions": 3},
     "parameter 'num_partitions' cannot be set in a scenario: it is federation.num_clients"),
    ("shards", 2, {"partition_by": "label"}, "parameter 'partition_by' cannot be set"),
    ("shards", 2, {"shuffle": False}, "parameter 'shuffle' cannot be set"),
    ("shards", 2, {"num_classes_per_partition": 0}, "num_classes_per_partition must be >= 1"),
    ("shards", 2, {"num_classes_per_partition": 11}, "above the number of classes (10)"),
    ("PathologicalPartitioner", 2, {},
     "partitioner 'PathologicalPartitioner' needs parameter 'num_classes_per_partition'"),
    ("PathologicalPartitioner", 2, {"num_classes_per_partition": 2, "class_assignment_mode": "fair"},
     "must be one of 'random', 'deterministic', 'first-deterministic'"),
    ("SizePartitioner", 3, {"partition_sizes": [10, 20]}, "partition_sizes lists 2 sizes, one per client"),
])
def test_bad_names_and_parameters_say_what_is_allowed(method, n, params, message):
    with pytest.raises(ValueError) as info:
        partition(method, LABELS, n, 0, params)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        partition("iid", np.zeros((4, 2), dtype=int), 2, 0)
    with pytest.raises(ValueError, match="labels"):
        partition("iid", np.array([0.5, 1.5]), 2, 0)


# --------------------------------------------------------------------------- split_like


def test_split_like_matches_train_mix():
    train_parts = partition("dirichlet", LABELS, 8, 9, {"alpha": 0.3})
    test_parts = split_like(LABELS, train_parts, TEST_LABELS, seed=9)
    assert len(test_parts) == 8
    _check_disjoint(test_parts, len(TEST_LABELS))
    train_h, test_h = _hist(train_parts, LABELS), _hist(test_parts, TEST_LABELS)
    quota = train_h * (100 / 600)  # exact proportional share of each class's 100 test samples
    assert np.all(np.abs(test_h - quota) < 1)  # largest-remainder rounding
    np.testing.assert_array_equal(test_h.sum(axis=0), 100)
    again = split_like(LABELS, train_parts, TEST_LABELS, seed=9)
    assert all(np.array_equal(x, y) for x, y in zip(test_parts, again))


def test_split_like_shards_keeps_classes():
    train_parts = partition("shards", LABELS, 4, 0)  # 8 slots, 2 classes unused
    test_parts = split_like(LABELS, train_parts, TEST_LABELS, seed=0)
    _check_disjoint(test_parts, len(TEST_LABELS), cover=False)
    np.testing.assert_array_equal(_hist(train_parts, LABELS) > 0, _hist(test_parts, TEST_LABELS) > 0)


# --------------------------------------------------------------------------- stored splits, parties on disk


def test_client_splits_are_stored_and_read_back_without_flower(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path))
    train, test = load_dataset("cifar10-mini", None, "train"), load_dataset("cifar10-mini", None, "test")
    first = client_splits("dirichlet", {"alpha": 0.3}, train, test, 5, 11)
    assert len(list((tmp_path / "partitions").iterdir())) == 1
    import fedsim.data.partition as computed

    monkeypatch.setattr(computed, "split_for_clients", lambda *a, **k: pytest.fail("recomputed a stored split"))
    again = client_splits("dirichlet", {"alpha": 0.3}, train, test, 5, 11)
    for a, b in zip(first, again):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(BaseException, match="recomputed"):  # another seed is another split
        client_splits("dirichlet", {"alpha": 0.3}, train, test, 5, 12)


def _party_folder(root, layout: dict[str, dict[str, dict[str, int]]]) -> None:
    """root/<split>/<party>/<class>/<i>.jpg, real JPEGs written by PIL."""
    rng = np.random.default_rng(0)
    for split, parties in layout.items():
        for party, classes in parties.items():
            for cls, n in classes.items():
                folder = root / split / party / cls
                folder.mkdir(parents=True)
                for i in range(n):
                    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")


def test_natural_id_on_an_image_folder_of_parties(tmp_path):
    _party_folder(tmp_path, {
        "train": {"hospital_b": {"cat": 3, "dog": 2}, "hospital_a": {"cat": 2, "fox": 4}},
        "test": {"hospital_a": {"fox": 2}, "hospital_b": {"cat": 1, "dog": 1}},
    })
    train = load_dataset("imagefolder-parties", str(tmp_path), "train")
    test = load_dataset("imagefolder-parties", str(tmp_path), "test")
    assert train.classes == test.classes == ["cat", "dog", "fox"]
    assert sorted(set(train.parties)) == ["hospital_a", "hospital_b"] and len(train) == 11
    parts, queries = split_for_clients("natural_id", {}, train.targets, test.targets, 2, 0, train.parties, test.parties)
    assert [set(train.parties[p]) for p in parts] == [{"hospital_a"}, {"hospital_b"}]
    assert [set(test.parties[q]) for q in queries] == [{"hospital_a"}, {"hospital_b"}]
    np.testing.assert_array_equal(np.bincount(train.targets[parts[0]], minlength=3), [2, 0, 4])
    img, label = train[int(parts[1][0])]
    assert img.mode == "RGB" and img.size == (16, 16) and label == train.targets[parts[1][0]]
    # label partitioners work on the same folder, and queries then follow the label mix
    parts, queries = split_for_clients("iid", {}, train.targets, test.targets, 2, 0, train.parties, test.parties)
    assert sum(map(len, parts)) == 11 and sum(map(len, queries)) <= 4
