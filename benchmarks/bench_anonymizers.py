"""Every anonymizer on n x d float32 embeddings: seconds and peak memory, next to the
original study's approach measured in the same run.

Baselines (named, same data, same machine):
* ``sklearn_kmeans``: scikit-learn ``KMeans(n_clusters, n_init=1, max_iter=n_iter)`` (what the
  study used), against fedsim's ``kmeans`` at the same iteration count: time ratio,
  relative inertia gap and the kNN accuracy of the two releases on held-out queries;
* ``dense_distance_matrix``: ``sklearn.metrics.pairwise.euclidean_distances(X, X)``, the
  n x n matrix the study's density-based method built, at the largest n that fits in
  the memory left (fedsim's ``density_based`` never builds it).

Each measurement runs in its own subprocess so peak RSS is its own.  Data: a seeded
mixture of 10 Gaussian classes with per-class structure, like CNN embeddings.

    python benchmarks/bench_anonymizers.py [--n 50000] [--d 512] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

METHODS = [
    ("none", {}), ("permutation", {}), ("random", {"noise_scale": 0.1}), ("laplace", {"noise_scale": 0.1}),
    ("gaussian", {"noise_scale": 0.1}), ("dp_gaussian", {"epsilon": 1.0, "delta": 1e-5}),
    ("random_projection", {"n_components": 64}), ("pca", {"n_components": 64}),
    ("kmeans", {"n_clusters": 1000, "assign_labels": "majority"}),
    ("density_based", {"max_dist": 24.0, "min_samples": 5, "noise_scale": 0.1}),
    ("mdav", {"k": 5}), ("gan", {"n_epochs": 5}),
]

DATA = r"""
import numpy as np
def make(n, d, seed=0):
    structure = np.random.default_rng(12345)            # the same classes for every sample
    centers = structure.normal(size=(10, d)).astype(np.float32) * 1.5
    sub = structure.normal(size=(10, 8, d)).astype(np.float32) * 0.6   # sub-modes per class
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    X = centers[y] + sub[y, rng.integers(0, 8, n)] + rng.normal(size=(n, d)).astype(np.float32) * 0.8
    return X.astype(np.float32), y
"""

CHILD_METHOD = DATA + r"""
import json, resource, sys, time
from fedsim import anonymizers
name, params, n, d = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
X, y = make(n, d)
anon = anonymizers.create(name, seed=0, key=1, **params)
t = time.perf_counter()
anon.fit(X, y); Xr, yr = anon.release(X, y)
dt = time.perf_counter() - t
out = {"seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "n_released": len(yr)}
if name == "kmeans":
    import torch
    from fedsim.classifiers import KNNClassifier
    Q, qy = make(5000, d, seed=1)
    out["inertia"] = float(sum(((X[g] - X[g].mean(0)) ** 2).sum() for g in anon.groups_))
    out["knn_accuracy"] = KNNClassifier(k=5).fit(Xr, yr).score(Q, qy)
print(json.dumps(out))
"""

CHILD_SKLEARN = DATA + r"""
import json, resource, sys, time
import numpy as np
from sklearn.cluster import KMeans
from fedsim.classifiers import KNNClassifier
n, d, k, iters = map(int, sys.argv[1:5])
X, y = make(n, d)
t = time.perf_counter()
km = KMeans(n_clusters=k, n_init=1, max_iter=iters, tol=0.0, random_state=0).fit(X)
dt = time.perf_counter() - t
labels = np.array([np.bincount(y[km.labels_ == c]).argmax() if (km.labels_ == c).any() else 0 for c in range(k)])
Q, qy = make(5000, d, seed=1)
print(json.dumps({"seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "inertia": float(km.inertia_), "n_iter": int(km.n_iter_),
                  "knn_accuracy": KNNClassifier(k=5).fit(km.cluster_centers_.astype(np.float32), labels).score(Q, qy)}))
"""

CHILD_DENSE = DATA + r"""
import json, resource, sys, time
from sklearn.metrics.pairwise import euclidean_distances
n, d = int(sys.argv[1]), int(sys.argv[2])
X, _ = make(n, d)
t = time.perf_counter()
D = euclidean_distances(X, X)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "matrix_gb": D.nbytes / 2**30, "n": n}))
"""


def run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def available_gb() -> float:
    with open("/proc/meminfo") as fh:
        info = {line.split(":")[0]: int(line.split()[1]) for line in fh}
    return info["MemAvailable"] / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    n, d = str(args.n), str(args.d)
    print(f"# anonymizer benchmark: {args.n} x {args.d} float32, {os.cpu_count()} CPUs, {platform.machine()}")
    print("| method | parameters | seconds | peak RSS MB | released |")
    print("|---|---|---|---|---|")
    rows = {}
    for name, params in METHODS:
        r = run(CHILD_METHOD, name, json.dumps(params), n, d)
        rows[name] = {"params": params, **r}
        if "error" in r:
            print(f"| {name} | {params} | error: {r['error']} | | |", flush=True)
        else:
            print(f"| {name} | {params} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {r['n_released']} |", flush=True)
    sk = run(CHILD_SKLEARN, n, d, "1000", "20")
    rows["sklearn_kmeans"] = sk
    ours = rows.get("kmeans", {})
    if "error" not in sk and "seconds" in ours:
        gap = (ours["inertia"] - sk["inertia"]) / sk["inertia"] if ours.get("inertia") else float("nan")
        print(f"\nkmeans (1000 clusters, 20 iterations): fedsim {ours['seconds']:.1f} s vs scikit-learn "
              f"{sk['seconds']:.1f} s = {sk['seconds'] / ours['seconds']:.1f}x faster; inertia gap {100 * gap:+.2f}%; "
              f"kNN accuracy of the release {ours.get('knn_accuracy', float('nan')):.4f} vs {sk['knn_accuracy']:.4f}; "
              f"peak RSS {ours['peak_rss_mb']:.0f} vs {sk['peak_rss_mb']:.0f} MB")
    # the largest dense n x n float32 matrix that fits comfortably (30% of the available memory)
    fit_n = min(args.n, int((available_gb() * 0.3 * 2**30 / 4) ** 0.5) // 1000 * 1000)
    dense = run(CHILD_DENSE, str(fit_n), d)
    rows["dense_distance_matrix"] = dense
    if "error" not in dense:
        db = rows.get("density_based", {})
        print(f"dense distance matrix (the study's density_based) at n={fit_n}: {dense['seconds']:.1f} s, "
              f"{dense['matrix_gb']:.1f} GB matrix, peak RSS {dense['peak_rss_mb']:.0f} MB; fedsim density_based at "
              f"n={args.n}: {db.get('seconds', float('nan')):.1f} s, peak RSS {db.get('peak_rss_mb', float('nan')):.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
