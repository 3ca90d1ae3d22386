"""Figures of a simulated run drawn by the driver, which (unlike the server) may look at
every client's images: the pooled embeddings in one projection and kNN neighbourhoods.

They show the extractor's embedding space before anonymization; the clients' cached
embeddings are reused, so this costs no second extraction.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fedsim.classifiers import KNNClassifier
from fedsim.clients.release import client_indices, extractor_for, partition_params
from fedsim.config import Scenario
from fedsim.data import load_dataset
from fedsim.device import best_device
from fedsim.extractors.cache import EmbeddingCache, cached_extract

log = logging.getLogger(__name__)


def draw_run_plots(scenario: Scenario, run_dir: Path) -> list[Path]:
    from fedsim.extractors.evaluate import make_figures

    p, d, ex = scenario.plots, scenario.data, scenario.extractor
    if p.embeddings == "off" and not p.knn_samples:
        return []
    train_ds = load_dataset(d.dataset, d.root or None, "train", d.download)
    test_ds = load_dataset(d.dataset, d.root or None, "test", d.download)
    parts, queries = client_indices(d.dataset, d.root, d.download, scenario.partition.method,
                                    partition_params(scenario), scenario.federation.num_clients, scenario.seed)
    extractor = extractor_for(scenario, len(train_ds.classes))
    train_ds.transform = test_ds.transform = extractor.transform()
    cache = EmbeddingCache(ex.cache_dir or None) if ex.cache else None
    kw = dict(batch_size=ex.batch_size, num_workers=ex.num_workers, device=best_device(ex.device), amp=ex.amp,
              cache=cache, dataset_name=d.dataset, root=d.root, progress=False)
    train_emb = np.concatenate([cached_extract(extractor, train_ds, split="train", indices=i, **kw)[0] for i in parts])
    test_emb = np.concatenate([cached_extract(extractor, test_ds, split="test", indices=i, **kw)[0] for i in queries])
    train_index, test_index = np.concatenate(parts), np.concatenate(queries)
    knn_params = scenario.classifiers.get("knn", {"k": 5})
    knn = KNNClassifier(**knn_params).fit(train_emb, train_ds.targets[train_index])
    paths = make_figures(train_ds, test_ds, train_emb, test_emb, knn, run_dir,
                         method=None if p.embeddings == "off" else p.embeddings, seed=scenario.seed,
                         train_index=train_index, test_index=test_index, knn_samples=p.knn_samples)
    log.info("plots: %s", ", ".join(path.name for path in paths))
    return paths
