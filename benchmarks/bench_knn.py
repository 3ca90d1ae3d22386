"""Server classifiers against scikit-learn (and faiss), measured in the same run.

kNN predict (k=5, euclidean) of ``n_query`` queries against ``n_db`` x ``dim`` float32:

* ``sklearn``: ``KNeighborsClassifier(n_neighbors=5, algorithm="brute")`` -- the reference;
* ``faiss``: ``IndexFlatL2`` search + majority vote (skipped when faiss is not installed);
* ``torch_fp32``: a plain chunked fp32 ``matmul`` + ``topk`` + vote, written out here;
* ``fedsim_knn``: ``KNNClassifier(k=5, metric="euclidean")`` with its defaults (``auto``:
  bf16 prefilter + exact fp32 re-rank where the hardware has bf16 units).

Each reports seconds (median of ``--repeats`` after a warm-up), the speed-up over
scikit-learn and the share of predictions equal to scikit-learn's (must be >= 99.9%).
Also fedsim ``ncm`` fit/predict against ``NearestCentroid``, and ``fc`` (10 epochs) against
``SGDClassifier(loss="log_loss", max_iter=10, tol=None)`` (logistic regression by SGD, 10
epochs too), with accuracy on the queries.

Data: a seeded mixture of 10 Gaussian classes with sub-modes, not centred, overlapping
enough that kNN makes mistakes (so agreement is not trivially 100%).

    python benchmarks/bench_knn.py [--n-db 50000] [--n-query 10000] [--dim 512] [--repeats 3] [--out bench_knn.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.linear_model import SGDClassifier
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

from fedsim.classifiers import FCClassifier, KNNClassifier, NCMClassifier
from fedsim.device import best_device

K = 5
MIN_AGREEMENT = 0.999


def make(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    structure = np.random.default_rng(12345)  # the same classes for every sample
    centers = 3.0 + structure.normal(size=(10, d)).astype(np.float32) * 0.2
    sub = structure.normal(size=(10, 8, d)).astype(np.float32) * 0.1  # sub-modes per class
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    X = centers[y] + sub[y, rng.integers(0, 8, n)] + rng.normal(size=(n, d)).astype(np.float32)
    return X.astype(np.float32), y


def vote(labels: np.ndarray) -> np.ndarray:
    """Majority label per row; ties go to the smallest label, like scikit-learn."""
    counts = np.zeros((len(labels), labels.max() + 1), np.int64)
    np.add.at(counts, (np.arange(len(labels))[:, None], labels), 1)
    return counts.argmax(1)


def torch_fp32_predict(X: torch.Tensor, y: torch.Tensor, Q: np.ndarray, chunk_bytes: int = 256 * 2**20) -> np.ndarray:
    """The plain approach: fp32 distances chunk by chunk, top-k, vote."""
    q_all = torch.from_numpy(Q).to(X.device)
    sqnorm = (X * X).sum(1)
    out = []
    with torch.inference_mode():
        for q in q_all.split(max(1, chunk_bytes // (4 * len(X)))):
            idx = (2.0 * (q @ X.T) - sqnorm).topk(K, dim=1).indices
            out.append(y[idx])
    return vote(torch.cat(out).cpu().numpy())


def timed(fn: Callable[[], object], repeats: int, warmup: Callable[[], object] | None = None) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up call, and the last result."""
    (warmup or fn)()
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-db", type=int, default=50000)
    ap.add_argument("--n-query", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    X, y = make(args.n_db, args.dim, seed=0)
    Q, qy = make(args.n_query, args.dim, seed=1)
    dev = best_device("auto")
    r = args.repeats
    print(f"# classifier benchmark: {args.n_db} x {args.dim} database, {args.n_query} queries, k={K}, euclidean; "
          f"{os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads), {platform.machine()}, device {dev}")
    rows: list[dict] = []

    def record(task: str, name: str, seconds: float, pred: np.ndarray | None, ref: np.ndarray | None,
               ref_s: float | None, **extra: object) -> None:
        row = {"task": task, "method": name, "seconds": seconds, **extra}
        if pred is not None:
            row["accuracy"] = float((pred == qy).mean())
        if ref is not None:
            row["agreement"] = float((pred == ref).mean())
        if ref_s is not None:
            row["speedup_vs_sklearn"] = ref_s / seconds
        rows.append(row)

    # ---- kNN predict
    warm = Q[:256]
    sk = KNeighborsClassifier(n_neighbors=K, algorithm="brute").fit(X, y)
    sk_s, sk_pred = timed(lambda: sk.predict(Q), r, lambda: sk.predict(warm))
    record("knn predict", "sklearn", sk_s, sk_pred, None, None)
    try:
        import faiss
    except ImportError:
        print("faiss not installed: skipping the faiss baseline", file=sys.stderr)
    else:
        index = faiss.IndexFlatL2(args.dim)
        index.add(X)
        fs, pred = timed(lambda: vote(y[index.search(Q, K)[1]]), r, lambda: index.search(warm, K))
        record("knn predict", "faiss", fs, pred, sk_pred, sk_s)
    Xt, yt = torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)
    ts, pred = timed(lambda: torch_fp32_predict(Xt, yt, Q), r, lambda: torch_fp32_predict(Xt, yt, warm))
    record("knn predict", "torch_fp32", ts, pred, sk_pred, sk_s)
    t0 = time.perf_counter()
    knn = KNNClassifier(k=K, metric="euclidean").fit(X, y)
    knn.predict(warm)  # builds the search index (and the bf16 copy) once
    setup = time.perf_counter() - t0
    ks, pred = timed(lambda: knn.predict(Q), r)
    record("knn predict", "fedsim_knn", ks, pred, sk_pred, sk_s, setup_seconds=setup,
           bf16_prefilter=bool(knn.index_.bf16))

    # ---- NCM fit + predict
    nc_fit, nc = timed(lambda: NearestCentroid().fit(X, y), r)
    nc_pred_s, nc_pred = timed(lambda: nc.predict(Q), r)
    record("ncm fit", "sklearn_nearest_centroid", nc_fit, None, None, None)
    record("ncm predict", "sklearn_nearest_centroid", nc_pred_s, nc_pred, None, None)
    ncm_fit, ncm = timed(lambda: NCMClassifier(metric="euclidean").fit(X, y), r)
    ncm_pred_s, pred = timed(lambda: ncm.predict(Q), r)
    record("ncm fit", "fedsim_ncm", ncm_fit, None, None, nc_fit)
    record("ncm predict", "fedsim_ncm", ncm_pred_s, pred, nc_pred, nc_pred_s)

    # ---- FC: 10 epochs each
    sgd = lambda: SGDClassifier(loss="log_loss", max_iter=10, tol=None, random_state=0).fit(X, y)  # noqa: E731
    sgd_fit, sgd_model = timed(sgd, r)
    sgd_pred_s, sgd_pred = timed(lambda: sgd_model.predict(Q), r)
    record("fc fit (10 epochs)", "sklearn_sgd_logistic", sgd_fit, None, None, None)
    record("fc predict", "sklearn_sgd_logistic", sgd_pred_s, sgd_pred, None, None)
    fc_fit, fc = timed(lambda: FCClassifier(epochs=10).fit(X, y), r)
    fc_pred_s, pred = timed(lambda: fc.predict(Q), r)
    record("fc fit (10 epochs)", "fedsim_fc", fc_fit, None, None, sgd_fit)
    record("fc predict", "fedsim_fc", fc_pred_s, pred, None, sgd_pred_s)

    print("| task | method | seconds | speed-up vs scikit-learn | agreement with scikit-learn | accuracy |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        cells = [f"{row['speedup_vs_sklearn']:.2f}x" if "speedup_vs_sklearn" in row else "(reference)",
                 f"{100 * row['agreement']:.2f}%" if "agreement" in row else "",
                 f"{row['accuracy']:.4f}" if "accuracy" in row else ""]
        print(f"| {row['task']} | {row['method']} | {row['seconds']:.3f} | {' | '.join(cells)} |")
    ours = next(row for row in rows if row["method"] == "fedsim_knn")
    print(f"\nfedsim_knn: setup (fit + search index) {ours['setup_seconds']:.2f} s, "
          f"bf16 prefilter {'on' if ours['bf16_prefilter'] else 'off'}")
    low = [row["method"] for row in rows if row["task"] == "knn predict" and row.get("agreement", 1.0) < MIN_AGREEMENT]
    if args.out:
        meta = {"n_db": args.n_db, "n_query": args.n_query, "dim": args.dim, "k": K, "repeats": r,
                "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(dev)}
        with open(args.out, "w") as fh:
            json.dump({"meta": meta, "results": rows}, fh, indent=2)
    if low:
        sys.exit(f"kNN agreement with scikit-learn below {100 * MIN_AGREEMENT:.1f}%: {', '.join(low)}")


if __name__ == "__main__":
    main()
