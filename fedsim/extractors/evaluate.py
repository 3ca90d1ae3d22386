"""``fedsim evaluate-extractor``: softmax test accuracy and k-NN accuracy of a zoo model,
plus the embedding and kNN-sample figures (centralised, outside any federation).

``test_accuracy`` is the flip-TTA figure (image + mirror image); ``test_accuracy_no_tta``
the plain one and ``test_accuracy_multicrop`` airbench's 6-view TTA (flip x one-pixel
translations).  The k-NN figure uses the embeddings the federation's clients extract with
the same ``tta`` (``extractor.tta``, default ``flip``: the mean of the image's and its
mirror image's ``embed()`` vectors); ``tta="none"`` gives the plain vectors' figure."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from fedsim import extractors
from fedsim.classifiers import KNNClassifier
from fedsim.data import load_dataset
from fedsim.device import best_device
from fedsim.extractors.cache import EmbeddingCache, cached_extract
from fedsim.extractors.extract import precision_for, progress_bar
from fedsim.plotting import plot_embeddings, plot_knn_samples

log = logging.getLogger(__name__)


@torch.inference_mode()
def softmax_accuracy(model: torch.nn.Module, dataset: Any, batch_size: int, num_workers: int,
                     device: torch.device, precision: str, multicrop: bool = False) -> tuple[float, ...]:
    """(plain, flip-TTA) top-1 accuracy of the model's own classification head, and with
    ``multicrop`` a third figure: airbench's 6-view TTA (flip x one-pixel translations,
    ``fedsim.extractors.train.tta_logits``)."""
    from fedsim.extractors.train import tta_logits

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    model = model.to(device).eval()
    plain = tta = crops = n = 0
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for x, y in progress_bar(loader, desc="test accuracy", disable=False):
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            y = y.to(device)
            logits = model(x).float()
            plain += int((logits.argmax(1) == y).sum())
            tta += int(((logits + model(x.flip(3)).float()).argmax(1) == y).sum())
            if multicrop:
                crops += int((tta_logits(model, x, "multicrop").argmax(1) == y).sum())
            n += len(y)
    return (plain / n, tta / n, crops / n) if multicrop else (plain / n, tta / n)


def make_figures(
    train_ds: Any, test_ds: Any, train_emb: np.ndarray, test_emb: np.ndarray, knn: KNNClassifier,
    out_dir: str | Path, method: str | None = "tsne", n_queries: int = 8, seed: int = 0,
    train_index: np.ndarray | None = None, test_index: np.ndarray | None = None, knn_samples: bool = True,
) -> list[Path]:
    """embeddings_<method>.png (one projection of train and test) and knn_samples.png.

    Row i of ``train_emb`` is image ``train_index[i]`` of ``train_ds`` (default: i), and
    likewise for test; ``knn`` must be fitted on ``train_emb`` in row order.
    """
    out_dir = Path(out_dir)
    classes = list(train_ds.classes)
    train_index = np.arange(len(train_emb)) if train_index is None else np.asarray(train_index)
    test_index = np.arange(len(test_emb)) if test_index is None else np.asarray(test_index)
    paths = []
    if method:
        paths.append(plot_embeddings(
            {"train": (train_emb, train_ds.targets[train_index]), "test": (test_emb, test_ds.targets[test_index])},
            classes, out_dir / f"embeddings_{method}.png", method=method, seed=seed,
        ))
    if not knn_samples:
        return paths
    rng = np.random.default_rng(seed)
    q = np.sort(rng.choice(len(test_emb), size=min(n_queries, len(test_emb)), replace=False))
    dist, idx = knn.kneighbors(test_emb[q])
    pred = knn.predict(test_emb[q])
    old = train_ds.transform, test_ds.transform
    train_ds.transform = test_ds.transform = np.asarray  # raw HxWx3 uint8, as stored
    try:
        paths.append(plot_knn_samples(
            [test_ds[i][0] for i in test_index[q]], test_ds.targets[test_index[q]],
            [[train_ds[j][0] for j in train_index[row]] for row in idx], knn.y_.cpu().numpy()[idx], dist, pred,
            classes, out_dir / "knn_samples.png", metric=knn.metric,
        ))
    finally:
        train_ds.transform, test_ds.transform = old
    return paths


def evaluate_extractor(
    model: str, weights: str, dataset: str, root: str = "", download: bool = False, k: int = 5,
    metric: str = "cosine", batch_size: int = 256, num_workers: int = 2, device: str = "auto",
    amp: str = "auto", tta: str = "flip", cache: bool = True, plots_dir: str | Path | None = None,
    plot_method: str = "tsne", seed: int = 0,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    train_ds = load_dataset(dataset, root or None, "train", download=download)
    test_ds = load_dataset(dataset, root or None, "test", download=download)
    ex = extractors.create(model, weights=weights, num_classes=len(train_ds.classes), seed=seed)
    dev = best_device(device)
    precision = precision_for(dev, amp)
    train_ds.transform = test_ds.transform = ex.transform()
    store = EmbeddingCache() if cache else None
    kw = dict(batch_size=batch_size, num_workers=num_workers, device=dev, amp=amp, tta=tta, cache=store,
              dataset_name=dataset, root=root, indices=None)
    train_emb, hit_tr = cached_extract(ex, train_ds, split="train", desc="train embeddings", **kw)
    test_emb, hit_te = cached_extract(ex, test_ds, split="test", desc="test embeddings", **kw)
    if hit_tr and hit_te:
        log.info("embeddings reused from the cache (%s)", store.root)
    knn = KNNClassifier(k=k, metric=metric).fit(train_emb, train_ds.targets)
    knn_acc = knn.score(test_emb, test_ds.targets)
    plain, flip_acc, crops = softmax_accuracy(ex.model, test_ds, batch_size, num_workers, dev, precision,
                                              multicrop=True)
    result = {
        "model": model, "weights_id": ex.weights_id, "dataset": dataset,
        "n_train": len(train_ds), "n_test": len(test_ds), "precision": precision,
        "test_accuracy": flip_acc, "tta": "flip", "test_accuracy_no_tta": plain, "test_accuracy_multicrop": crops,
        "knn_accuracy": knn_acc, "k": k, "metric": metric, "embedding_tta": tta,
        "embedding_dim": ex.embedding_dim, "seconds": round(time.perf_counter() - t0, 1),
    }
    if plots_dir is not None:
        result["plots"] = [str(p) for p in make_figures(train_ds, test_ds, train_emb, test_emb, knn,
                                                        plots_dir, plot_method, seed=seed)]
    return result
