"""Embedding cache: hits only when everything that determines the numbers is equal."""

from __future__ import annotations

import numpy as np

from fedsim import extractors
from fedsim.data import load_dataset
from fedsim.extractors.cache import EmbeddingCache, cached_extract, embedding_key, preprocessing_of
from fedsim.extractors.extract import precision_for


def _key(**changes):
    base = dict(weights_id="abc", model="compact_cnn", preprocessing={"input_size": 32}, precision="fp32",
                tta="none", dataset="cifar10-mini", root="", split="train", labels=np.arange(10) % 3, indices=np.arange(5))
    base.update(changes)
    return embedding_key(**base)


def test_put_get_and_every_key_part_matters(tmp_path):
    cache = EmbeddingCache(tmp_path)
    emb = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    cache.put(_key(), emb)
    np.testing.assert_array_equal(cache.get(_key()), emb)
    for change in [dict(weights_id="abd"), dict(model="simple_convnet"), dict(preprocessing={"input_size": 224}),
                   dict(precision="bf16"), dict(tta="flip"), dict(dataset="cifar10"), dict(split="test"),
                   dict(labels=np.arange(10) % 4), dict(indices=np.arange(1, 6)), dict(root="/data")]:
        assert cache.get(_key(**change)) is None, change
    assert not list(tmp_path.rglob("*.tmp"))


def test_damaged_entry_is_recomputed(tmp_path):
    cache = EmbeddingCache(tmp_path)
    path = cache.put(_key(), np.zeros((5, 4), np.float32))
    path.write_bytes(b"garbage")
    assert cache.get(_key()) is None


def test_cached_extract_hits_second_time_and_misses_for_other_weights(tmp_path):
    ds = load_dataset("cifar10-mini", None, "test")
    cache = EmbeddingCache(tmp_path)
    idx = np.arange(8)
    common = dict(dataset_name="cifar10-mini", root="", split="test", indices=idx, cache=cache, progress=False)
    ex = extractors.create("compact_cnn", seed=0)
    ds.transform = ex.transform()
    a, hit_a = cached_extract(ex, ds, **common)
    b, hit_b = cached_extract(ex, ds, **common)
    assert (hit_a, hit_b) == (False, True)
    np.testing.assert_array_equal(a, b)
    other = extractors.create("compact_cnn", seed=1)
    c, hit_c = cached_extract(other, ds, **common)
    assert not hit_c and not np.allclose(a, c)


def test_a_share_is_served_from_the_whole_split_entry(tmp_path):
    """One extraction of the split serves every partition: the share's rows, read through a
    memory map, equal the share extracted on its own."""
    ds = load_dataset("cifar10-mini", None, "test")
    ex = extractors.create("compact_cnn", seed=0)
    ds.transform = ex.transform()
    common = dict(dataset_name="cifar10-mini", root="", split="test", progress=False)
    share = np.array([7, 3, 500, 12])
    alone, _ = cached_extract(ex, ds, indices=share, cache=None, **common)
    cache = EmbeddingCache(tmp_path)
    whole = np.random.default_rng(0).normal(size=(len(ds), alone.shape[1])).astype(np.float32)
    key = embedding_key(weights_id=ex.weights_id, model=ex.name, preprocessing=preprocessing_of(ex.spec),
                        precision=precision_for("cpu", "auto"), tta="none", dataset="cifar10-mini", root="",
                        split="test", labels=ds.targets, indices=None)
    whole[share] = alone
    cache.put(key, whole)
    got, hit = cached_extract(ex, ds, indices=share, cache=cache, **common)
    assert hit and got.flags.writeable and not isinstance(got, np.memmap)
    np.testing.assert_array_equal(got, alone)
    assert len(list(tmp_path.rglob("*.npy"))) == 1  # nothing duplicated
