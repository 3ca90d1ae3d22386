"""The client's side of an online round: draw the round's new records, extract them (in
the round's image domain), anonymize them, and keep its query sets for scoring.

Every function is a pure function of (scenario, partition, round), so a client process
that starts fresh for each message (deployment engine) computes what a long-lived one
(simulation) does.  Embeddings of corrupted images go through the on-disk embedding cache
with the domain in the key, and are memoised per process.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np

from fedsim.clients.release import (ClientData, Release, _dataset, anonymize, client_data, embedding_scope,
                                    extractor_for, scenario_indices)
from fedsim.config import Scenario
from fedsim.device import best_device
from fedsim.extractors.cache import EmbeddingCache, cached_extract
from fedsim.online.corruptions import CorruptTransform, Domain
from fedsim.online.stream import BatchStream
from fedsim.seeding import derive_seed


def stream_for(scenario: Scenario, data: ClientData, batch_size: int) -> BatchStream:
    return BatchStream(data.y_train, batch_size, scenario.seed, scenario.online.sampling, client=data.partition_id)


#: (embedding scope, partition id, split, domain) -> embeddings, of one client only (the
#: last served), like fedsim.clients.release's memo; the embedding cache serves revisits.
_DOMAIN_EMB: dict[tuple, np.ndarray] = {}


def _domain_embeddings(scenario: Scenario, pid: int, num_partitions: int, split: str, domain: Domain) -> np.ndarray:
    """Embeddings of this client's whole train partition or query set seen through ``domain``."""
    client = (*embedding_scope(scenario, num_partitions), pid)
    key = (*client, split, domain.label)
    if key in _DOMAIN_EMB:
        return _DOMAIN_EMB[key]
    if any(k[:len(client)] != client for k in _DOMAIN_EMB):
        _DOMAIN_EMB.clear()
    d, ex = scenario.data, scenario.extractor
    parts, queries = scenario_indices(scenario, num_partitions)
    indices = (parts if split == "train" else queries)[pid]
    base = _dataset(d.dataset, d.root, split, d.download)
    extractor = extractor_for(scenario, len(base.classes))
    ds = copy.copy(base)  # the shared dataset keeps its own transform
    ds.transform = CorruptTransform(domain, derive_seed(scenario.seed, "corruption"), extractor.transform())
    emb, _ = cached_extract(
        extractor, ds, dataset_name=d.dataset, root=d.root, split=f"{split}@{domain.label}", indices=indices,
        cache=EmbeddingCache(ex.cache_dir or None) if ex.cache else None, batch_size=ex.batch_size,
        num_workers=ex.num_workers, device=best_device(ex.device), amp=ex.amp, tta=ex.tta, progress=False,
        desc=f"client {pid} {split} {domain.label}")
    _DOMAIN_EMB[key] = emb
    return emb


def _in_domain(scenario: Scenario, data: ClientData, num_partitions: int, split: str, domain: Domain) -> np.ndarray:
    if domain.name == "clean":
        return data.x_train if split == "train" else data.x_query
    return _domain_embeddings(scenario, data.partition_id, num_partitions, split, domain)


def round_release(scenario: Scenario, pid: int, num_partitions: int, method: str, params: dict[str, Any],
                  round_index: int, batch_size: int, key: int | None
                  ) -> tuple[Release, dict[str, np.ndarray], dict[str, float]]:
    """(release of this round's new records, transformed queries of every test domain, info)."""
    t0 = time.perf_counter()
    data = client_data(scenario, pid, num_partitions, progress=False)
    idx = stream_for(scenario, data, batch_size).batch(round_index)
    domain = scenario.online.schedule(scenario.seed)[round_index]
    x_batch = _in_domain(scenario, data, num_partitions, "train", domain)[idx]
    domains = scenario.online.test_domains(scenario.seed)
    queries = {d.label: _in_domain(scenario, data, num_partitions, "test", d) for d in domains}
    t_extract = time.perf_counter() - t0
    batch = ClientData(partition_id=pid, x_train=x_batch, y_train=data.y_train[idx],
                       x_query=queries[domain.label], y_query=data.y_query,
                       label_histogram=data.label_histogram, timings={"extract_s": t_extract},
                       embedding_cache=data.embedding_cache)
    rel = anonymize(scenario, batch, method, params, key=key)
    transformed = {label: rel.anonymizer.transform_queries(q) for label, q in queries.items()}
    info = {"domain": domain.label, "extract_s": t_extract, "n_batch": float(len(idx))}
    return rel, transformed, info


def check_rounds(scenario: Scenario) -> None:
    """Every client can serve every round at every batch size (before any work starts)."""
    from fedsim.online.stream import OutOfData

    d = scenario.data
    parts, _ = scenario_indices(scenario, scenario.federation.num_clients)
    labels = _dataset(d.dataset, d.root, "train", d.download).targets
    for batch_size in scenario.online.batch_sizes():
        for pid, part in enumerate(parts):
            stream = BatchStream(labels[part], batch_size, scenario.seed, scenario.online.sampling, client=pid)
            if stream.rounds_available() < scenario.online.rounds:
                try:
                    stream.batch(scenario.online.rounds - 1)
                except OutOfData as err:
                    raise ValueError(f"online.batch_size = {batch_size}: {err}") from None
