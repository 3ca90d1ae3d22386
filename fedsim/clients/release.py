"""What one client computes before anything leaves it: its partition, its embeddings, and
the anonymized release.  Pure functions of (scenario, partition id), so every node derives
the same partitions and the same shared extractor without talking to the others."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

import numpy as np

from fedsim import anonymizers, extractors
from fedsim.config import Scenario
from fedsim.data import load_dataset, partition, split_like
from fedsim.device import best_device
from fedsim.extractors.cache import EmbeddingCache, cached_extract
from fedsim.seeding import derive_seed

log = logging.getLogger(__name__)


@dataclass
class Release:
    """Everything a client sends: anonymized training data, transformed queries, metrics."""

    partition_id: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray
    label_histogram: np.ndarray
    n_train: int
    n_query: int
    timings: dict[str, float]
    embedding_cache: str  # hit | miss | off


@functools.lru_cache(maxsize=4)
def _dataset(name: str, root: str, split: str, download: bool):
    return load_dataset(name, root or None, split, download=download)


@functools.lru_cache(maxsize=8)
def client_indices(
    name: str, root: str, download: bool, method: str, params: tuple, num_partitions: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Train and query index partitions for all clients (cached per process)."""
    train_labels = _dataset(name, root, "train", download).targets
    test_labels = _dataset(name, root, "test", download).targets
    parts = partition(method, train_labels, num_partitions, derive_seed(seed, "partition"), **dict(params))
    queries = split_like(train_labels, parts, test_labels, derive_seed(seed, "query-partition"))
    return parts, queries


def partition_params(scenario: Scenario) -> tuple:
    """The parameters the chosen partitioner takes, as a hashable tuple."""
    p = scenario.partition
    by_method = {
        "iid": {},
        "dirichlet": {"alpha": p.alpha, "min_partition_size": p.min_partition_size, "self_balancing": p.self_balancing},
        "shards": {"classes_per_client": p.classes_per_client},
    }
    return tuple(sorted(by_method.get(p.method, {}).items()))


@functools.lru_cache(maxsize=2)
def _extractor(name: str, weights: str, num_classes: int, seed: int, download: bool) -> extractors.Extractor:
    return extractors.create(name, weights=weights, num_classes=num_classes, seed=seed, download=download)


def extractor_for(scenario: Scenario, num_classes: int) -> extractors.Extractor:
    """The federation's shared extractor (random init is seeded identically on every node)."""
    ex = scenario.extractor
    return _extractor(ex.name, ex.weights, num_classes, derive_seed(scenario.seed, "extractor"), ex.download)


def build_release(scenario: Scenario, partition_id: int, num_partitions: int, progress: bool = True) -> Release:
    """Load this client's partition, extract, anonymize; return only what may be shared."""
    d, ex = scenario.data, scenario.extractor
    train_ds = _dataset(d.dataset, d.root, "train", d.download)
    test_ds = _dataset(d.dataset, d.root, "test", d.download)
    parts, queries = client_indices(
        d.dataset, d.root, d.download, scenario.partition.method, partition_params(scenario),
        num_partitions, scenario.seed,
    )
    train_idx, query_idx = parts[partition_id], queries[partition_id]
    num_classes = len(train_ds.classes)

    extractor = extractor_for(scenario, num_classes)
    device = best_device(ex.device)
    transform = extractor.transform()
    train_ds.transform = test_ds.transform = transform
    t0 = time.perf_counter()
    cache = EmbeddingCache(ex.cache_dir or None) if ex.cache else None
    kw = dict(batch_size=ex.batch_size, num_workers=ex.num_workers, device=device, progress=progress,
              amp=ex.amp, cache=cache, dataset_name=d.dataset, root=d.root)
    x_train, hit_train = cached_extract(extractor, train_ds, split="train", indices=train_idx,
                                        desc=f"client {partition_id} train", **kw)
    x_query, hit_query = cached_extract(extractor, test_ds, split="test", indices=query_idx,
                                        desc=f"client {partition_id} query", **kw)
    t_extract = time.perf_counter() - t0
    cache_state = "off" if cache is None else ("hit" if hit_train and hit_query else "miss")
    y_train = train_ds.targets[train_idx]
    y_query = test_ds.targets[query_idx]

    (method, params), = scenario.anonymizers.items()
    t0 = time.perf_counter()
    anon = anonymizers.create(method, seed=derive_seed(scenario.seed, "anonymizer", partition_id), **params)
    anon.fit(x_train, y_train)
    x_rel, y_rel = anon.release(x_train, y_train)
    q_rel = anon.transform_queries(x_query)
    t_anon = time.perf_counter() - t0
    log.info("client %d: %d train / %d query embeddings on %s in %.1fs (cache %s)", partition_id,
             len(train_idx), len(query_idx), device, t_extract, cache_state)
    return Release(
        partition_id=partition_id,
        x_train=x_rel, y_train=y_rel, x_query=q_rel, y_query=y_query,
        label_histogram=np.bincount(y_train, minlength=num_classes),
        n_train=len(train_idx), n_query=len(query_idx),
        timings={"extract_s": t_extract, "anonymize_s": t_anon},
        embedding_cache=cache_state,
    )
