"""Server classifiers against scikit-learn (and faiss), measured in the same run.

kNN predict (k=5, euclidean) of ``n_query`` queries against ``n_db`` x ``dim`` float32, every
path timed ``--repeats`` times interleaved with the others after a warm-up, minimum (the
machine may be shared: a burst of load elsewhere hits every path of that round):

* ``sklearn``: ``KNeighborsClassifier(n_neighbors=5, algorithm="brute")`` -- the reference;
* ``faiss``: ``IndexFlatL2`` search + majority vote (skipped when faiss is not installed);
* ``torch_fp32``: a plain chunked fp32 ``addmm`` (scores ``2 q.x - |x|^2``) + ``topk`` + vote;
* ``torch_bf16``: the same product in bf16 + ``topk`` + vote, NOT exact -- the cost of the
  bf16 product itself (timed only where the CPU has bf16 units, or on CUDA);
* ``fedsim_knn``: ``KNNClassifier(k=5, metric="euclidean")`` with its defaults (``auto``:
  the fastest exact path on this machine, from a one-off calibration), and
  ``fedsim_<path>`` with each of its exact paths forced (``--no-paths`` skips them).

The floor is the fastest of faiss and the best matrix-product path + top-k; each row
reports its time as a multiple of the floor and the speed-up over scikit-learn and faiss,
the share of neighbours equal to scikit-learn's (recall; exact paths must give 1.0) and of
predictions equal to scikit-learn's (must be >= 99.9%).  The calibration runs in a fresh
cache folder so its cost is measured (``--keep-cache``: use the user's).
Also fedsim ``ncm`` fit/predict against ``NearestCentroid``, and ``fc`` (10 epochs) against
``SGDClassifier(loss="log_loss", max_iter=10, tol=None)`` (logistic regression by SGD, 10
epochs too), with accuracy on the queries (median of ``--repeats`` after a warm-up).

Data: a seeded mixture of 10 Gaussian classes with sub-modes, not centred, overlapping
enough that kNN makes mistakes (so agreement is not trivially 100%).

    python benchmarks/bench_knn.py [--n-db 50000] [--n-query 10000] [--dim 512] [--repeats 3] [--out bench_knn.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.linear_model import SGDClassifier
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

from fedsim.classifiers import FCClassifier, KNNClassifier, NCMClassifier
from fedsim.device import best_device, bf16_autocast_ok, cpu_info, cpu_kind

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


def torch_matmul_topk(X: torch.Tensor, Q: np.ndarray, bf16: bool, chunk_bytes: int = 256 * 2**20) -> np.ndarray:
    """The plain approach: one product per query chunk, ``2 q.x - |x|^2`` folded into
    ``addmm`` (in bf16 NOT exact: a bf16 ``|x|^2`` keeps 8 bits), top-k, indices."""
    q_all = torch.from_numpy(Q).to(X.device)
    out = []
    with torch.inference_mode():
        sqnorm = (X * X).sum(1)
        if bf16:
            Xb, sqnorm = X.bfloat16(), sqnorm.bfloat16()
            for q in q_all.split(max(1, chunk_bytes // (2 * len(X)))):
                out.append(torch.addmm(sqnorm, q.bfloat16(), Xb.T, beta=-1.0, alpha=2.0).topk(K, dim=1).indices)
        else:
            for q in q_all.split(max(1, chunk_bytes // (4 * len(X)))):
                out.append(torch.addmm(sqnorm, q, X.T, beta=-1.0, alpha=2.0).topk(K, dim=1).indices)
    return torch.cat(out).cpu().numpy()


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmups: dict[str, Callable[[], object]]
                ) -> tuple[dict[str, float], dict[str, object]]:
    """Minimum seconds of ``repeats`` rounds in which every function runs once (after one
    warm-up call each), and each function's last result."""
    for name, fn in fns.items():
        warmups.get(name, fn)()
    best, results = {name: math.inf for name in fns}, {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best, results


def recall(idx: np.ndarray, ref: np.ndarray) -> float:
    """Share of the reference neighbours found (per query, as sets)."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(idx.tolist(), ref.tolist())]))


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
    ap.add_argument("--no-paths", action="store_true", help="time fedsim's auto choice only, not every path")
    ap.add_argument("--knn-only", action="store_true", help="skip the NCM and FC comparisons")
    ap.add_argument("--keep-cache", action="store_true",
                    help="use the user's cache folder (a calibration stored there is reused)")
    args = ap.parse_args()
    if not args.keep_cache:  # a fresh calibration, so its cost is part of the setup measured here
        os.environ["FEDSIM_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-knn-cache-")
    X, y = make(args.n_db, args.dim, seed=0)
    Q, qy = make(args.n_query, args.dim, seed=1)
    dev = best_device("auto")
    r = args.repeats
    print(f"# classifier benchmark: {args.n_db} x {args.dim} database, {args.n_query} queries, k={K}, euclidean; "
          f"{os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads), {platform.machine()}, device {dev}; "
          f"CPU {cpu_info()['model']} ({cpu_kind()}: {', '.join(cpu_info()['features']) or 'no listed features'}), "
          f"torch {torch.__version__}")
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

    # ---- kNN predict: every path in the same rounds, minimum
    warm = Q[:256]
    sk = KNeighborsClassifier(n_neighbors=K, algorithm="brute").fit(X, y)
    _, sk_idx = sk.kneighbors(Q)  # the reference neighbours (untimed)
    fns: dict[str, Callable[[], np.ndarray]] = {"sklearn": lambda: sk.predict(Q)}
    warmups: dict[str, Callable[[], object]] = {"sklearn": lambda: sk.predict(warm)}
    neighbours: dict[str, Callable[[object], np.ndarray]] = {}  # result -> neighbour indices
    try:
        import faiss
    except ImportError:
        print("faiss not installed: skipping the faiss baseline and path", file=sys.stderr)
        faiss = None
    else:
        index = faiss.IndexFlatL2(args.dim)
        index.add(X)
        fns["faiss"] = lambda: index.search(Q, K)[1]
        warmups["faiss"] = lambda: index.search(warm, K)
    Xt = torch.from_numpy(X).to(dev)
    fns["torch_fp32"] = lambda: torch_matmul_topk(Xt, Q, bf16=False)
    warmups["torch_fp32"] = lambda: torch_matmul_topk(Xt, warm, bf16=False)
    if bf16_autocast_ok(dev):
        fns["torch_bf16"] = lambda: torch_matmul_topk(Xt, Q, bf16=True)
        warmups["torch_bf16"] = lambda: torch_matmul_topk(Xt, warm, bf16=True)
    else:
        print("no bf16 units on this device: the bf16 product is not a floor candidate", file=sys.stderr)
    baselines = [name for name in fns if name != "sklearn"]
    models = {"fedsim_knn": {}}
    if not args.no_paths:
        models["fedsim_torch_fp32"] = {"precision": "fp32", "backend": "torch"}
        if bf16_autocast_ok(dev):
            models["fedsim_torch_bf16"] = {"precision": "bf16"}
        if faiss is not None:
            models["fedsim_faiss"] = {"backend": "faiss"}
    fitted, setup = {}, {}
    for name, params in models.items():
        t0 = time.perf_counter()
        fitted[name] = KNNClassifier(k=K, metric="euclidean", **params).fit(X, y)
        fitted[name].predict(warm)  # chooses the path (calibration) and builds the index once
        setup[name] = time.perf_counter() - t0
        fns[name] = (lambda m: lambda: m.predict(Q))(fitted[name])
        warmups[name] = lambda: None
    seconds, results = interleaved(fns, r, warmups)
    floor_name = min(baselines, key=seconds.get)
    floor = seconds[floor_name]
    sk_pred, sk_s = results["sklearn"], seconds["sklearn"]
    for name in fns:
        if name in fitted:
            pred, idx = results[name], fitted[name].kneighbors(Q)[1]
        elif name == "sklearn":
            pred, idx = sk_pred, sk_idx
        else:
            idx = results[name]
            pred = vote(y[idx])
        extra = {"x_floor": seconds[name] / floor, "recall_vs_sklearn": recall(idx, sk_idx)}
        if "faiss" in seconds:
            extra["speedup_vs_faiss"] = seconds["faiss"] / seconds[name]
        if name in fitted:
            extra.update(setup_seconds=setup[name], path=fitted[name].search_path_)
        if name == "torch_bf16":
            extra["exact"] = False
        record("knn predict", name, seconds[name], pred, None if name == "sklearn" else sk_pred,
               None if name == "sklearn" else sk_s, **extra)

    if not args.knn_only:
        ncm_and_fc(X, y, Q, r, record)
    report(args, rows, r, dev, fitted)


def ncm_and_fc(X: np.ndarray, y: np.ndarray, Q: np.ndarray, r: int, record: Callable[..., None]) -> None:
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


def report(args: argparse.Namespace, rows: list[dict], r: int, dev: torch.device, fitted: dict) -> None:
    knn_rows = [row for row in rows if row["task"] == "knn predict"]
    print("| method | path | seconds | x floor | vs scikit-learn | vs faiss | neighbour recall | agreement | accuracy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in knn_rows:
        cells = [row.get("path", "(not exact)" if row.get("exact") is False else ""), f"{row['seconds']:.3f}",
                 f"{row['x_floor']:.2f}x", f"{row['speedup_vs_sklearn']:.2f}x" if "speedup_vs_sklearn" in row else "1.00x",
                 f"{row['speedup_vs_faiss']:.2f}x" if "speedup_vs_faiss" in row else "",
                 f"{row['recall_vs_sklearn']:.5f}", f"{100 * row['agreement']:.2f}%" if "agreement" in row else "",
                 f"{row['accuracy']:.4f}"]
        print(f"| {row['method']} | {' | '.join(cells)} |")
    print("\n| task | method | seconds | speed-up vs scikit-learn | agreement with scikit-learn | accuracy |")
    print("|---|---|---|---|---|---|")
    for row in rows[len(knn_rows):]:
        cells = [f"{row['speedup_vs_sklearn']:.2f}x" if "speedup_vs_sklearn" in row else "(reference)",
                 f"{100 * row['agreement']:.2f}%" if "agreement" in row else "",
                 f"{row['accuracy']:.4f}" if "accuracy" in row else ""]
        print(f"| {row['task']} | {row['method']} | {row['seconds']:.3f} | {' | '.join(cells)} |")
    ours = next(row for row in rows if row["method"] == "fedsim_knn")
    floor_name = next(row["method"] for row in knn_rows if row["x_floor"] == 1.0 and "path" not in row
                      and row["method"] != "sklearn")
    floor = next(row["seconds"] for row in knn_rows if row["method"] == floor_name)
    choice = fitted["fedsim_knn"].search_choice_
    print(f"\nfloor: {floor_name} {floor:.3f} s. fedsim_knn (auto -> {ours['path']}): {ours['seconds']:.3f} s = "
          f"{ours['x_floor']:.2f}x the floor, {ours['speedup_vs_sklearn']:.2f}x scikit-learn"
          + (f", {ours['speedup_vs_faiss']:.2f}x faiss" if "speedup_vs_faiss" in ours else "")
          + f", neighbour recall {ours['recall_vs_sklearn']:.5f}")
    print(f"auto's choice: {json.dumps(choice, sort_keys=True)}; setup (fit + choice + index) "
          f"{ours['setup_seconds']:.2f} s")
    low = [row["method"] for row in knn_rows if row.get("agreement", 1.0) < MIN_AGREEMENT and row.get("exact", True)]
    inexact = [row["method"] for row in knn_rows if "path" in row and row["recall_vs_sklearn"] < 1.0]
    if args.out:
        meta = {"n_db": args.n_db, "n_query": args.n_query, "dim": args.dim, "k": K, "repeats": r,
                "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(dev),
                "cpu": cpu_info(), "cpu_kind": cpu_kind(), "torch": torch.__version__, "floor": floor_name,
                "auto_choice": choice}
        with open(args.out, "w") as fh:
            json.dump({"meta": meta, "results": rows}, fh, indent=2)
    if low or inexact:
        sys.exit(f"kNN agreement with scikit-learn below {100 * MIN_AGREEMENT:.1f}%: {', '.join(low) or '-'}; "
                 f"fedsim paths whose neighbours differ from scikit-learn's: {', '.join(inexact) or '-'}")


if __name__ == "__main__":
    main()
