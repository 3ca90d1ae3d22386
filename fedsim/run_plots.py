"""Figures of a simulated run drawn by the driver, which (unlike the server) may look at
every client's images: the pooled embeddings in one projection and kNN neighbourhoods.

They show the extractor's embedding space before anonymization; the clients' cached
embeddings are reused, so this costs no second extraction.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from fedsim import anonymizers
from fedsim.classifiers import KNNClassifier
from fedsim.clients.release import anonymize, client_data, scenario_indices, shared_statistics
from fedsim.config import Scenario
from fedsim.data import load_dataset
from fedsim.extractors.evaluate import make_figures
from fedsim.labels import config_label, label_slug
from fedsim.plotting import plot_embeddings

log = logging.getLogger(__name__)


def draw_run_plots(scenario: Scenario, run_dir: Path, key: int | None = None) -> list[Path]:
    """The figures that ``[plots]`` asks for, written into ``run_dir``; their paths."""
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
    if p.embeddings != "off":
        paths += draw_release_plots(scenario, clients, train_ds.classes, run_dir, key)
    log.info("plots: %s", ", ".join(path.name for path in paths))
    return paths


def draw_release_plots(scenario: Scenario, clients: list, classes: list[str], run_dir: Path,
                       key: int | None = None) -> list[Path]:
    """Client 0's embeddings before and after each anonymizer, in ONE shared projection (so
    the two panels are comparable); skipped when the release changes the dimension."""
    quiet = dataclasses.replace(scenario, privacy=dataclasses.replace(scenario.privacy, metrics=False))
    data, paths = clients[0], []
    for method, params in scenario.anonymizer_grid():
        if method == "none":
            continue
        shared = None
        if anonymizers.needs_shared_state(method):
            stats = [shared_statistics(scenario, c, method, params) for c in clients]
            shared = anonymizers.combine_shared_state(method, params, stats)
        rel = anonymize(quiet, data, method, params, shared, key=key)
        label = config_label(method, params)
        if rel.x_train.shape[1] != data.x_train.shape[1] or not len(rel.y_train):
            log.info("%s: release has dimension %d (or is empty); no shared projection with the original",
                     label, rel.x_train.shape[1])
            continue
        paths.append(plot_embeddings(
            {"original (client 0)": (data.x_train, data.y_train), f"released: {label}": (rel.x_train, rel.y_train)},
            classes, run_dir / f"embeddings_anonymized-{label_slug(label)}.png", method=scenario.plots.embeddings,
            seed=scenario.seed, title=f"Client 0 before and after {label} ({scenario.plots.embeddings.upper()}, "
                                      "one projection fitted on both)"))
    return paths
