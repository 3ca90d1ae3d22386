"""What one client computes before anything leaves it: its partition, its embeddings, and
the anonymized release with its own privacy and utility measurements.

Pure functions of (scenario, partition id), so every node derives the same partitions and
the same shared extractor without talking to the others.  Embeddings are computed once
per client process and reused for every anonymizer configuration of a sweep.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedsim import anonymizers, extractors
from fedsim.classifiers import KNNClassifier
from fedsim.clients.keys import KEY_ENV, NODE_KEY
from fedsim.clients.node_config import OWN_DATA
from fedsim.config import Scenario
from fedsim.data import client_splits, load_dataset
from fedsim.device import best_device
from fedsim.extractors.cache import EmbeddingCache, cached_extract
from fedsim.seeding import derive_seed

log = logging.getLogger(__name__)


@dataclass
class ClientData:
    """A client's private embeddings: they never leave the client."""

    partition_id: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray
    label_histogram: np.ndarray
    timings: dict[str, float]
    embedding_cache: str  # hit | miss | off

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_query(self) -> int:
        return len(self.y_query)


@dataclass
class Release:
    """What a client sends for one anonymizer configuration."""

    partition_id: int
    method: str
    params: dict[str, Any]
    x_train: np.ndarray  # the training release
    y_train: np.ndarray
    x_query: np.ndarray  # queries transformed the same way
    y_query: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)  # privacy + client-side utility
    timings: dict[str, float] = field(default_factory=dict)
    anonymizer: Any = None  # the fitted anonymizer (stays on the client; online rounds reuse it)


@functools.lru_cache(maxsize=4)
def _dataset(name: str, root: str, split: str, download: bool):
    """A split as a cheap object (labels, and images read when asked for), once per process."""
    return load_dataset(name, root or None, split, download=download)


@functools.lru_cache(maxsize=8)
def client_indices(name: str, root: str, download: bool, method: str, params_json: str, num_partitions: int,
                   seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Train and query index partitions for all clients (from the labels alone; stored on
    disk by the first process that computes them, and cached per process)."""
    train, test = _dataset(name, root, "train", download), _dataset(name, root, "test", download)
    return client_splits(method, json.loads(params_json), train, test, num_partitions, seed)


def scenario_indices(scenario: Scenario, num_partitions: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    d, p = scenario.data, scenario.partition
    if p.method == OWN_DATA:  # a SuperNode's own image folder (node config data-folder): all of it is its own
        n_train, n_test = (len(_dataset(d.dataset, d.root, s, d.download).targets) for s in ("train", "test"))
        return [np.arange(n_train)] * num_partitions, [np.arange(n_test)] * num_partitions
    return client_indices(d.dataset, d.root, d.download, p.method, json.dumps(p.params, sort_keys=True),
                          num_partitions, scenario.seed)


@functools.lru_cache(maxsize=2)
def _extractor(name: str, weights: str, num_classes: int, seed: int, download: bool) -> extractors.Extractor:
    return extractors.create(name, weights=weights, num_classes=num_classes, seed=seed, download=download)


def extractor_for(scenario: Scenario, num_classes: int) -> extractors.Extractor:
    """The federation's shared extractor (random init is seeded identically on every node)."""
    ex = scenario.extractor
    return _extractor(ex.name, ex.weights, num_classes, derive_seed(scenario.seed, "extractor"), ex.download)


class LazyTransform:
    """The extractor's preprocessing, built when the first image is decoded: a client whose
    embeddings come from the embedding cache never imports torchvision (seconds in every
    deployment message, each of which is a fresh process)."""

    def __init__(self, extractor: extractors.Extractor) -> None:
        self.extractor = extractor
        self._fn: Any = None

    def __call__(self, image: Any) -> Any:
        if self._fn is None:
            self._fn = self.extractor.transform()
        return self._fn(image)


#: (embedding scope, partition id) -> data of the last client this process served.  One
#: entry at most, so a process's memory follows its current partition, not every partition
#: it served; a revisit reads the embedding cache (keyed by the client's indices).
_CURRENT: dict[tuple, ClientData] = {}


def embedding_scope(scenario: Scenario, num_partitions: int) -> tuple:
    """What a client's embeddings depend on: the key of the per-process memos."""
    return (json.dumps([scenario.seed, scenario.data.__dict__, scenario.partition.__dict__,
                        scenario.extractor.__dict__], sort_keys=True, default=str), num_partitions)


def client_data(scenario: Scenario, partition_id: int, num_partitions: int, progress: bool = True) -> ClientData:
    """This client's partition and embeddings (extracted, or read from the embedding cache;
    kept in the process while it serves this client)."""
    key = embedding_scope(scenario, num_partitions)
    if (key, partition_id) in _CURRENT:
        return _CURRENT[key, partition_id]
    _CURRENT.clear()  # drop the previous client's embeddings before extracting these
    d, ex = scenario.data, scenario.extractor
    train_ds = _dataset(d.dataset, d.root, "train", d.download)
    test_ds = _dataset(d.dataset, d.root, "test", d.download)
    parts, queries = scenario_indices(scenario, num_partitions)
    train_idx, query_idx = parts[partition_id], queries[partition_id]
    num_classes = len(train_ds.classes)
    extractor = extractor_for(scenario, num_classes)
    device = best_device(ex.device)
    train_ds.transform = test_ds.transform = LazyTransform(extractor)
    t0 = time.perf_counter()
    cache = EmbeddingCache(ex.cache_dir or None) if ex.cache else None
    kw = dict(batch_size=ex.batch_size, num_workers=ex.num_workers, device=device, progress=progress,
              amp=ex.amp, tta=ex.tta, cache=cache, dataset_name=d.dataset, root=d.root)
    x_train, hit_train = cached_extract(extractor, train_ds, split="train", indices=train_idx,
                                        desc=f"client {partition_id} train", **kw)
    x_query, hit_query = cached_extract(extractor, test_ds, split="test", indices=query_idx,
                                        desc=f"client {partition_id} query", **kw)
    t_extract = time.perf_counter() - t0
    cache_state = "off" if cache is None else ("hit" if hit_train and hit_query else "miss")
    log.info("client %d: %d train / %d query embeddings on %s in %.1fs (cache %s)", partition_id,
             len(train_idx), len(query_idx), device, t_extract, cache_state)
    y_train = train_ds.targets[train_idx]
    data = ClientData(
        partition_id=partition_id, x_train=x_train, y_train=y_train, x_query=x_query,
        y_query=test_ds.targets[query_idx], label_histogram=np.bincount(y_train, minlength=num_classes),
        timings={"extract_s": t_extract}, embedding_cache=cache_state,
    )
    _CURRENT[key, partition_id] = data
    return data


def embed_splits(scenario: Scenario) -> None:
    """Embed both splits of the scenario's data set whole into the embedding cache: every
    client's share, for any partition and number of clients, is then read from there
    (``cached_extract``) instead of extracted."""
    d, ex = scenario.data, scenario.extractor
    for split in ("train", "test"):
        ds = _dataset(d.dataset, d.root, split, d.download)
        extractor = extractor_for(scenario, len(ds.classes))
        ds.transform = extractor.transform()
        cached_extract(extractor, ds, split=split, indices=None, desc=f"{split} embeddings",
                       batch_size=ex.batch_size, num_workers=ex.num_workers, device=best_device(ex.device),
                       amp=ex.amp, tta=ex.tta, cache=EmbeddingCache(ex.cache_dir or None),
                       dataset_name=d.dataset, root=d.root)


def make_anonymizer(scenario: Scenario, method: str, params: dict[str, Any], partition_id: int,
                    key: int | None = None):
    """Per-client noise seed; the federation key (a client-side secret, fedsim.clients.keys)
    for keyed transforms -- the server never holds it and cannot derive it."""
    anon = anonymizers.create(method, seed=derive_seed(scenario.seed, "anonymizer", method, partition_id),
                              key=key or 0, **params)
    if anon.inverted_with == "key" and key is None:
        raise ValueError(f"{method} needs the federation key, and this client has none: give the SuperNode "
                         f"--node-config \"{NODE_KEY}='/path/to/key'\" or set ${KEY_ENV}")
    return anon


def local_utility(data: ClientData, x_rel: np.ndarray, y_rel: np.ndarray, q_rel: np.ndarray,
                  knn_params: dict[str, Any]) -> dict[str, float]:
    """kNN accuracy on this client's own queries: clean reference, release on transformed
    queries, release on clean queries (only when the release lives in the clean space)."""
    if data.n_query == 0 or len(y_rel) == 0:
        return {"local_accuracy_clean": math.nan, "local_accuracy_anonymized": math.nan,
                "local_accuracy_anonymized_clean_queries": math.nan, "local_accuracy_loss": math.nan}
    clean = KNNClassifier(**knn_params).fit(data.x_train, data.y_train).score(data.x_query, data.y_query)
    knn = KNNClassifier(**knn_params).fit(x_rel, y_rel)
    anon = knn.score(q_rel, data.y_query)
    on_clean = knn.score(data.x_query, data.y_query) if x_rel.shape[1] == data.x_train.shape[1] else math.nan
    return {"local_accuracy_clean": clean, "local_accuracy_anonymized": anon,
            "local_accuracy_anonymized_clean_queries": on_clean, "local_accuracy_loss": clean - anon}


def anonymize(scenario: Scenario, data: ClientData, method: str, params: dict[str, Any],
              shared: dict[str, np.ndarray] | None = None, key: int | None = None) -> Release:
    """Fit the anonymizer on the client's own data, release, and measure what it gives away
    to the server (``metrics``) and, for keyed methods, to an insider holding the key
    (``insider.<metric>``)."""
    from fedsim.privacy import evaluate, profile_for

    t0 = time.perf_counter()
    anon = make_anonymizer(scenario, method, params, data.partition_id, key)
    if shared is not None:
        anon.set_shared_state(shared)
    anon.fit(data.x_train, data.y_train)
    x_rel, y_rel = anon.release(data.x_train, data.y_train)
    q_rel = anon.transform_queries(data.x_query)
    t_anon = time.perf_counter() - t0
    metrics: dict[str, float] = {"n_released": float(len(y_rel))}
    metrics.update({k: float(v) for k, v in getattr(anon, "release_info_", {}).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    t0 = time.perf_counter()
    if scenario.privacy.metrics:
        profile = profile_for(anon, aux_fraction=scenario.privacy.aux_fraction)

        def attack(x_seen: np.ndarray) -> dict[str, float]:
            return evaluate(data.x_train, data.y_train, x_seen, y_rel, groups=getattr(anon, "groups_", None),
                            X_control=data.x_query, seed=derive_seed(scenario.seed, "attack", data.partition_id),
                            max_samples=scenario.privacy.max_samples, profile=profile)

        # the server holds what it computed itself (a pca basis): it attacks the inverted release
        x_server = anon.invert(x_rel) if anon.inverted_with == "public" else x_rel
        metrics.update(attack(x_server))
        if anon.inverted_with == "key":
            metrics.update({f"insider.{k}": v for k, v in attack(anon.invert(x_rel)).items()})
        if scenario.privacy.anonymeter:  # only where the release lives in the original feature space
            from fedsim.privacy.anonymeter_risks import anonymeter_risks

            in_space = anon.inverted_with != "key" and x_server.shape[1] == data.x_train.shape[1]
            metrics.update(anonymeter_risks(
                data.x_train, data.y_train, x_server if in_space else np.zeros((0, 0), np.float32), y_rel,
                data.x_query, data.y_query, seed=derive_seed(scenario.seed, "anonymeter", data.partition_id)))
    knn_params = scenario.classifiers.get("knn", {"k": 5})
    metrics.update(local_utility(data, x_rel, y_rel, q_rel, knn_params))
    return Release(
        partition_id=data.partition_id, method=method, params=params,
        x_train=np.asarray(x_rel, np.float32), y_train=np.asarray(y_rel, np.int64),
        x_query=np.asarray(q_rel, np.float32), y_query=data.y_query,
        metrics=metrics, timings={"anonymize_s": t_anon, "measure_s": time.perf_counter() - t0},
        anonymizer=anon,
    )


def shared_statistics(scenario: Scenario, data: ClientData, method: str, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Sufficient statistics a method (pca) needs from every client to fit ONE shared
    transform (federated estimate); only aggregates leave the client."""
    anon = make_anonymizer(scenario, method, params, data.partition_id)
    return anon.shared_statistics(data.x_train)
