"""Embedding cache: hits only when everything that determines the numbers is equal."""

from __future__ import annotations

import numpy as np

from fedsim import extractors
from fedsim.data import load_dataset
from fedsim.extractors.cache import EmbeddingCache, cached_extract, embedding_key


def _key(**changes):
    base = dict(weights_id="abc", model="compact_cnn", preprocessing={"input_size": 32}, precision="fp32",
                dataset="cifar10-mini", root="", split="train", labels=np.arange(10) % 3, indices=np.arange(5))
    base.update(changes)
    return embedding_key(**base)


def test_put_get_and_every_key_part_matters(tmp_path):
    cache = EmbeddingCache(tmp_path)
    emb = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    cache.put(_key(), emb)
    np.testing.assert_array_equal(cache.get(_key()), emb)
    for change in [dict(weights_id="abd"), dict(model="simple_convnet"), dict(preprocessing={"input_size": 224}),
                   dict(precision="bf16"), dict(dataset="cifar10"), dict(split="test"),
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
