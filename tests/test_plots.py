"""Embedding figures: one shared projection, labelled axes; kNN sample grid."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.classifiers import KNNClassifier
from fedsim.data import load_dataset
from fedsim.extractors.evaluate import make_figures
from fedsim.plotting import plot_embeddings, project_2d


def _blobs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return (np.eye(3, 8)[y] * 8 + rng.normal(size=(n, 8))).astype(np.float32), y


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_keeps_class_structure(method):
    X, y = _blobs(150, 0)
    xy = project_2d(X, method, seed=0)
    centers = np.stack([xy[y == c].mean(0) for c in range(3)])
    spread = np.mean([xy[y == c].std(0).mean() for c in range(3)])
    gaps = [np.linalg.norm(centers[a] - centers[b]) for a, b in [(0, 1), (0, 2), (1, 2)]]
    assert min(gaps) > 2 * spread


def test_plot_embeddings_writes_png(tmp_path):
    X, y = _blobs(100, 1)
    Q, qy = _blobs(40, 2)
    path = plot_embeddings({"train": (X, y), "test": (Q, qy)}, ["a", "b", "c"], tmp_path / "e.png", method="pca")
    assert path.stat().st_size > 5_000


def test_make_figures_with_index_maps(tmp_path):
    train, test = load_dataset("cifar10-mini", None, "train"), load_dataset("cifar10-mini", None, "test")
    tr_idx, te_idx = np.arange(100, 160), np.arange(20, 40)
    rng = np.random.default_rng(0)
    tr_emb = rng.normal(size=(60, 4)).astype(np.float32)
    te_emb = rng.normal(size=(20, 4)).astype(np.float32)
    knn = KNNClassifier(k=3).fit(tr_emb, train.targets[tr_idx])
    paths = make_figures(train, test, tr_emb, te_emb, knn, tmp_path, method="pca", n_queries=4,
                         train_index=tr_idx, test_index=te_idx)
    assert [p.name for p in paths] == ["embeddings_pca.png", "knn_samples.png"]
    assert all(p.stat().st_size > 5_000 for p in paths)
    assert train.transform is None  # restored after reading raw images
