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
from fedsim.clients.release import client_data, scenario_indices
from fedsim.config import Scenario
from fedsim.data import load_dataset

log = logging.getLogger(__name__)


def draw_run_plots(scenario: Scenario, run_dir: Path) -> list[Path]:
    from fedsim.extractors.evaluate import make_figures

    p, d = scenario.plots, scenario.data
    if p.embeddings == "off" and not p.knn_samples:
        return []
    n = scenario.federation.num_clients
    clients = [client_data(scenario, pid, n, progress=False) for pid in range(n)]
    parts, queries = scenario_indices(scenario, n)
    train_emb = np.concatenate([c.x_train for c in clients])
    test_emb = np.concatenate([c.x_query for c in clients])
    train_index, test_index = np.concatenate(parts), np.concatenate(queries)
    train_ds = load_dataset(d.dataset, d.root or None, "train", d.download)
    test_ds = load_dataset(d.dataset, d.root or None, "test", d.download)
    knn = KNNClassifier(**scenario.classifiers.get("knn", {"k": 5})).fit(train_emb, train_ds.targets[train_index])
    paths = make_figures(train_ds, test_ds, train_emb, test_emb, knn, run_dir,
                         method=None if p.embeddings == "off" else p.embeddings, seed=scenario.seed,
                         train_index=train_index, test_index=test_index, knn_samples=p.knn_samples)
    log.info("plots: %s", ", ".join(path.name for path in paths))
    return paths
