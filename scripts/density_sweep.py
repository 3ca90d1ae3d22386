"""What ``density_based`` releases at each radius, on the CIFAR-10 JPEG embeddings.

For each radius -- an absolute ``max_dist`` or a ``radius_quantile`` of the adaptive radius
-- and each party size, the library's own ``density_based`` fits and releases one party's
training embeddings (the shipped ``compact_cnn``, flip embeddings, as the scenarios run)
and a 5-NN (euclidean) trained on the release scores the test queries, transformed as the
anonymizer transforms them.  Reported per row: the radius, the share of records dropped
(DBSCAN noise points), the share of all records in the largest cluster, the share of
clustered records released under another class's label, and the 5-NN accuracy.  Parties
smaller than the training set are seeded disjoint random shares (the figures are their
means, the radius their range).  A setting the anonymizer refuses (an absolute radius that
links most pairs of records) is reported with its error.  No attacks: REPRODUCTION.md's density_based paragraph.

    python scripts/density_sweep.py --root ../shared/datasets/cifar10-jpg --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from fedsim import anonymizers, extractors
from fedsim.classifiers import KNNClassifier
from fedsim.data import load_dataset
from fedsim.extractors.cache import EmbeddingCache, cached_extract


def embeddings(root: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and test embeddings of the shipped extractor (through fedsim's embedding cache)."""
    ex = extractors.create("compact_cnn", weights="default", num_classes=10)
    out = []
    for split in ("train", "test"):
        ds = load_dataset("imagefolder", root, split)
        ds.transform = ex.transform()
        emb, _ = cached_extract(ex, ds, dataset_name="imagefolder", root=root, split=split, indices=None,
                                cache=EmbeddingCache(), tta="flip", desc=f"{split} embeddings")
        out += [emb, np.asarray(ds.targets)]
    return tuple(out)


def measure(params: dict, X: np.ndarray, y: np.ndarray, Q: np.ndarray, yq: np.ndarray, seed: int) -> dict:
    anon = anonymizers.create("density_based", seed=seed, **params).fit(X, y)
    X_rel, y_rel = anon.release(X, y)
    info = anon.release_info_
    clustered = anon.labels_ >= 0
    kept_labels = y[clustered]  # release order = the kept records' order (noise points dropped)
    wrong = float((y_rel != kept_labels).mean()) if len(y_rel) else float("nan")
    acc = (KNNClassifier(k=5, metric="euclidean").fit(X_rel, y_rel).score(anon.transform_queries(Q), yq)
           if len(y_rel) >= 5 else float("nan"))
    return {"radius": info["radius"], "dropped": info["n_dropped"] / len(y),
            "largest_cluster": info["group_size_max"] / len(y) if info["n_clusters"] else 0.0,
            "other_label": wrong, "knn": acc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="image folder of CIFAR-10 (train/ and test/)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1250, 50000], help="records per party")
    ap.add_argument("--parties", type=int, default=4, help="disjoint parties measured per size below the set")
    ap.add_argument("--quantiles", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    ap.add_argument("--max-dist", type=float, nargs="*", default=[], help="absolute radii to add")
    ap.add_argument("--min-samples", type=int, default=3)
    ap.add_argument("--noise-scale", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    X, y, Q, yq = embeddings(args.root)
    rng = np.random.default_rng(args.seed)
    rows = [("max_dist", {"max_dist": r}) for r in args.max_dist] + \
           [("radius_quantile", {"radius_quantile": q}) for q in args.quantiles]
    results = []
    print("| records | radius setting | radius | dropped | largest cluster | another class's label | 5-NN |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        if size >= len(y):
            shares = [np.arange(len(y))]
        else:
            order = rng.permutation(len(y))
            shares = [np.sort(order[i * size:(i + 1) * size]) for i in range(min(args.parties, len(y) // size))]
        for kind, setting in rows:
            params = {"min_samples": args.min_samples, "noise_scale": args.noise_scale, **setting}
            try:
                per = [measure(params, X[s], y[s], Q, yq, args.seed) for s in shares]
            except ValueError as err:  # e.g. an absolute radius that links most pairs of a large party
                results.append({"records": size, **setting, "error": str(err)})
                print(f"| {size:,} | {kind} {next(iter(setting.values()))} | refused: {err} |||||", flush=True)
                continue
            radii = [p["radius"] for p in per]
            row = {"records": size, "parties": len(shares), **setting, "radius_min": min(radii),
                   "radius_max": max(radii), **{k: float(np.mean([p[k] for p in per])) for k in per[0] if k != "radius"}}
            results.append(row)
            radius = f"{radii[0]:.2f}" if len(radii) == 1 else f"{min(radii):.2f}-{max(radii):.2f}"
            print(f"| {size:,} | {kind} {next(iter(setting.values()))} | {radius} | {row['dropped']:.0%} | "
                  f"{row['largest_cluster']:.0%} | {row['other_label']:.0%} | {row['knn']:.1%} |", flush=True)
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
