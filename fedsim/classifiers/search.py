"""Nearest-neighbour search over a fixed database: torch (exact fp32, or a bf16 prefilter
re-ranked exactly in fp32) and faiss, and the choice among them (``choose_path``).

Every search returns (distances ascending, database indices) like scikit-learn's
``kneighbors``: cosine distance ``1 - cos`` on L2-normalised vectors, or euclidean distance.
The torch searches process queries in chunks so no chunk's scores exceed ``max_chunk_bytes``.

Which path is fastest depends on the CPU: where bf16 units exist (AVX512-BF16, AMX) the
bf16 prefilter wins, on AVX2-only CPUs bf16 products are emulated (several times slower
than fp32) and faiss's fp32 search beat torch's.  ``choose_path`` therefore times the
candidate paths once on a small synthetic problem of the database's shape
(``calibrate``) and keeps the answer per process and on disk (``<cache root>/knn-calibration``,
keyed by CPU model, CPU features, torch and faiss versions and thread count).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import time

import numpy as np
import torch

from fedsim import diskcache
from fedsim.device import bf16_autocast_ok, cpu_kind, cpu_signature

log = logging.getLogger(__name__)

#: the exact search paths: fp32 product + top-k, bf16 prefilter + fp32 re-rank, faiss flat index
PATHS = ("torch_fp32", "torch_bf16", "faiss")
#: below this many database rows every path takes milliseconds: torch fp32, no calibration
CALIBRATE_MIN_ROWS = 2048
#: the calibration problem: CAL_QUERIES queries against min(rows, CAL_CELLS / dim) rows
#: (rounded down to a power of two), each path timed CAL_ROUNDS times interleaved, minimum
CAL_QUERIES = 512
CAL_CELLS = 1 << 23
CAL_ROUNDS = 3
#: a path this many times slower than the best after a round is not timed again
CAL_DROP = 1.5
#: on CUDA (not calibrated): the bf16 prefilter above this many rows where bf16 is supported
BF16_MIN_ROWS = 8192
#: default extra candidates re-ranked after an fp32 product (torch or faiss): its rounding
#: (~1e-7 of |q|^2 + |x|^2) can only swap near-ties, never push a neighbour back 4 ranks
FP32_MARGIN = 4

_CHOICES: dict[str, dict] = {}  # this process's calibrations, by key


def _hi_lo(v: torch.Tensor) -> torch.Tensor:
    """``v`` as two bf16 columns whose sum is ``v`` to ~16 bits (one bf16 keeps only 8)."""
    hi = v.bfloat16()
    return torch.stack([hi, (v - hi.float()).bfloat16()], dim=1)


def rerank(X: torch.Tensor, metric: str, q: torch.Tensor, cand: torch.Tensor, k: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest of each query's candidate rows ``cand``, by exact fp32 distances
    (ascending) computed from the differences ``q - x`` themselves: no cancellation between
    large terms, unlike ``|q|^2 - 2 q.x + |x|^2`` or ``1 - q.x`` (for unit vectors the
    cosine distance is ``|q - x|^2 / 2``)."""
    x = X[cand]  # (queries, candidates, d): a copy
    x.sub_(q.unsqueeze(1))
    top, pos = x.mul_(x).sum(2).topk(k, dim=1, largest=False)
    dist = top.mul_(0.5) if metric == "cosine" else top.sqrt_()
    return dist, cand.gather(1, pos)


class TorchSearch:
    """Chunked matrix product + top-k on the database's device, then an exact re-rank.

    A query chunk is scored against the whole database in one product -- fp32 ``q.x`` or
    ``2 q.x - |x|^2`` (folded into ``addmm``: no extra pass over the scores), or with
    ``bf16`` against a cached bfloat16 copy -- and the best ``k + margin`` candidates are
    re-ranked by exact distances (``rerank``), so the neighbours are those of exact
    arithmetic even where the product's rounding would swap near-ties.  The bf16 score is
    one matrix product that yields minus the distance (``-|q - x|^2``, or ``cos - 1``):
    vectors are centred on the database mean and per-row and per-query fp32 terms ride
    along as extra hi/lo bf16 columns.  So bf16 rounds numbers the size of the neighbours'
    distances, not of the embeddings' norms, and no fp32 pass over the scores is needed.
    """

    def __init__(self, X: torch.Tensor, metric: str, bf16: bool, margin: int, max_chunk_bytes: int) -> None:
        self.X, self.metric, self.margin, self.max_chunk_bytes = X, metric, margin, max_chunk_bytes
        self.sqnorm = (X * X).sum(1) if metric == "euclidean" else None
        self.bf16 = bf16
        if bf16:
            self.center = X.mean(0)
            Xc = X - self.center
            scale, row_term = (1.0, X @ self.center) if metric == "cosine" else (2.0, -(Xc * Xc).sum(1))
            ones = torch.ones(len(X), 2, dtype=torch.bfloat16, device=X.device)
            self.X_bf16 = torch.cat([(scale * Xc).bfloat16(), _hi_lo(row_term), ones], dim=1)

    def _approx(self, q: torch.Tensor) -> torch.Tensor:
        """bf16 scores ~ minus the distance: ``[q-c, 1, 1, r(q)] . [s(x-c), o(x), 1, 1]``."""
        qc = q - self.center
        if self.metric == "cosine":  # q.x - 1 = (q-c).(x-c) + x.c + (q.c - c.c - 1)
            query_term = q @ self.center - self.center @ self.center - 1.0
        else:  # -|q-x|^2 = 2(q-c).(x-c) - |x-c|^2 - |q-c|^2
            query_term = -(qc * qc).sum(1)
        ones = torch.ones(len(q), 2, dtype=torch.bfloat16, device=q.device)
        return torch.cat([qc.bfloat16(), ones, _hi_lo(query_term)], dim=1) @ self.X_bf16.T

    def _scores(self, q: torch.Tensor) -> torch.Tensor:
        if self.bf16:
            return self._approx(q)
        return q @ self.X.T if self.sqnorm is None else torch.addmm(self.sqnorm, q, self.X.T, beta=-1.0, alpha=2.0)

    def search(self, Q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_db, d = self.X.shape
        k = min(k, n_db)
        n_cand = min(k + self.margin, n_db)
        # per query: its scores, freed (after the top-k) before the re-rank gathers its candidates
        row_bytes = max((2 if self.bf16 else 4) * n_db, 4 * n_cand * d)
        chunk = max(1, self.max_chunk_bytes // row_bytes)
        dists, idxs = [], []
        with torch.inference_mode():
            for q in Q.split(chunk):
                cand = self._scores(q).topk(n_cand, dim=1).indices
                dist, idx = rerank(self.X, self.metric, q, cand, k)
                dists.append(dist)
                idxs.append(idx)
        return torch.cat(dists), torch.cat(idxs)


def faiss_available() -> bool:
    try:
        importlib.import_module("faiss")
    except ImportError:
        return False
    return True


def import_faiss():
    """faiss, imported only when asked for; a ValueError (a parameter problem) when absent."""
    try:
        return importlib.import_module("faiss")
    except ImportError:
        raise ValueError("backend 'faiss' needs the faiss package: pip install faiss-cpu "
                         "(or pip install 'fedsim[faiss]')") from None


class FaissSearch:
    """faiss exact flat index on the CPU (inner product on normalised vectors, or L2) for the
    best ``k + margin`` candidates, re-ranked by exact distances like ``TorchSearch``."""

    bf16 = False

    def __init__(self, X: torch.Tensor, metric: str, margin: int = 0) -> None:
        faiss = import_faiss()
        self.faiss, self.metric, self.margin = faiss, metric, margin
        self.X = X.cpu()
        self.index = (faiss.IndexFlatIP if metric == "cosine" else faiss.IndexFlatL2)(X.shape[1])
        self.index.add(np.ascontiguousarray(self.X.numpy(), dtype=np.float32))

    def search(self, Q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.faiss.omp_set_num_threads(torch.get_num_threads())  # the CPUs this process was granted
        n = self.index.ntotal
        k = min(k, n)
        q = Q.cpu()
        _, cand = self.index.search(np.ascontiguousarray(q.numpy()), min(k + self.margin, n))
        with torch.inference_mode():
            dist, idx = rerank(self.X, self.metric, q, torch.from_numpy(cand), k)
        return dist.to(Q.device), idx.to(Q.device)


# ------------------------------------------------------------------------ choosing a path
def margin_for(path: str, k: int, margin: int | None) -> int:
    """Extra candidates the exact re-rank sees: ``margin`` when set, else ``max(16, 2k)`` after
    a bf16 product (8 bits: near neighbours trade places) and ``FP32_MARGIN`` after fp32."""
    if margin is not None:
        return margin
    return max(16, 2 * k) if path == "torch_bf16" else FP32_MARGIN


def build(path: str, X: torch.Tensor, metric: str, k: int, margin: int | None, max_chunk_bytes: int
          ) -> TorchSearch | FaissSearch:
    """The search object of ``path`` over database ``X`` (``margin``: see ``margin_for``)."""
    if path == "faiss":
        return FaissSearch(X, metric, margin_for(path, k, margin))
    return TorchSearch(X, metric, path == "torch_bf16", margin_for(path, k, margin), max_chunk_bytes)


def candidate_paths(device: torch.device, n_rows: int, k: int, margin: int | None = None, *, backend: str = "auto",
                    precision: str = "auto") -> list[str]:
    """The exact paths worth trying for this database on ``device``, given the classifier's
    ``backend`` and ``precision``.  bf16 only where the hardware has bf16 units (CUDA, AMX,
    AVX512-BF16: elsewhere it is emulated, several times slower than fp32) and the database
    is larger than the candidate list; faiss only on the CPU and when installed."""
    if backend == "faiss":
        return ["faiss"]
    if precision == "bf16":
        return ["torch_bf16"]
    paths = ["torch_fp32"]
    if precision == "auto" and n_rows > k + margin_for("torch_bf16", k, margin) and bf16_autocast_ok(device):
        paths.append("torch_bf16")
    if backend == "auto" and device.type == "cpu" and faiss_available():
        paths.append("faiss")
    return paths


def _faiss_version() -> str | None:
    try:
        return importlib.import_module("faiss").__version__
    except (ImportError, AttributeError):
        return None


def calibration_rows(n_rows: int, dim: int) -> int:
    """Rows of the calibration database: the power of two at most ``n_rows`` and
    ``CAL_CELLS / dim`` (so problems of similar size share one calibration)."""
    cap = max(CALIBRATE_MIN_ROWS, CAL_CELLS // max(1, dim))
    return 1 << int(math.log2(max(1, min(n_rows, cap))))


def calibration_key(paths: list[str], metric: str, dim: int, n_rows: int, k: int, margin: int | None,
                    max_chunk_bytes: int) -> dict:
    return {"cpu": cpu_signature(), "faiss": _faiss_version() if "faiss" in paths else None,
            "paths": sorted(paths), "metric": metric, "dim": dim, "rows": calibration_rows(n_rows, dim),
            "k": k, "margin": margin, "chunk_bytes": max_chunk_bytes}


@torch.inference_mode()
def calibrate(paths: list[str], metric: str, dim: int, rows: int, k: int, margin: int | None,
              max_chunk_bytes: int) -> dict[str, float]:
    """Seconds per path for ``CAL_QUERIES`` queries against ``rows`` x ``dim`` seeded random
    vectors on the CPU: each path is warmed up once, then timed ``CAL_ROUNDS`` times,
    interleaved with the others (so a burst of load elsewhere hits every path), minimum; a
    path ``CAL_DROP`` times slower than the best after a round is not timed again."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(rows, dim, generator=g) + 1.0  # not centred, like embeddings
    Q = torch.randn(CAL_QUERIES, dim, generator=g) + 1.0
    if metric == "cosine":
        X, Q = torch.nn.functional.normalize(X, dim=1), torch.nn.functional.normalize(Q, dim=1)
    searches = {p: build(p, X, metric, k, margin, max_chunk_bytes) for p in paths}
    for search in searches.values():
        search.search(Q[:64], k)
    best = {p: math.inf for p in paths}
    running = list(paths)
    for r in range(CAL_ROUNDS):
        for p in running[r % len(running):] + running[:r % len(running)]:  # rotate the order each round
            t = time.perf_counter()
            searches[p].search(Q, k)
            best[p] = min(best[p], time.perf_counter() - t)
        running = [p for p in running if best[p] <= CAL_DROP * min(best.values())]  # out of the race
    return best


def choose_path(paths: list[str], X: torch.Tensor, metric: str, k: int, margin: int | None,
                max_chunk_bytes: int) -> tuple[str, dict]:
    """The fastest of ``paths`` (all exact) for database ``X``, and how it was chosen.

    One path: that one.  CUDA: the bf16 prefilter above ``BF16_MIN_ROWS`` rows where it is a
    candidate, else fp32 (rule; bf16 tensor cores are several times faster than fp32).
    CPU: below ``CALIBRATE_MIN_ROWS`` rows torch fp32; else the fastest path of
    ``calibrate`` for this shape, measured once and kept per process and on disk."""
    n, dim = X.shape
    if len(paths) == 1:
        return paths[0], {"rule": "only candidate"}
    if X.device.type != "cpu":
        bf16 = "torch_bf16" in paths and n > BF16_MIN_ROWS
        return ("torch_bf16" if bf16 else "torch_fp32"), {"rule": f"{X.device.type}: bf16 above {BF16_MIN_ROWS} rows"}
    if n < CALIBRATE_MIN_ROWS:
        return "torch_fp32", {"rule": f"below {CALIBRATE_MIN_ROWS} rows"}
    key = calibration_key(paths, metric, dim, n, k, margin, max_chunk_bytes)
    name = json.dumps(key, sort_keys=True)
    if name not in _CHOICES:
        _CHOICES[name] = _stored_choice(key) or _calibrate_and_store(key, paths, metric, dim, k, margin,
                                                                     max_chunk_bytes)
    choice = _CHOICES[name]
    return choice["path"], choice


def _stored_choice(key: dict) -> dict | None:
    folder = diskcache.find("knn-calibration", key)
    if folder is None:
        return None
    try:
        choice = json.loads((folder / "choice.json").read_text())
    except (OSError, ValueError):
        return None
    return {**choice, "source": "disk"} if choice.get("path") in key["paths"] else None


def _calibrate_and_store(key: dict, paths: list[str], metric: str, dim: int, k: int, margin: int | None,
                         max_chunk_bytes: int) -> dict:
    t0 = time.perf_counter()
    seconds = calibrate(paths, metric, dim, key["rows"], k, margin, max_chunk_bytes)
    path = min(seconds, key=seconds.get)
    choice = {"path": path, "seconds": seconds, "cpu_kind": cpu_kind(),
              "calibration_s": round(time.perf_counter() - t0, 3)}
    log.info("knn: %s is the fastest exact search here (%s; %d x %d %s, calibrated in %.2f s)", path,
             ", ".join(f"{p} {1e3 * s:.1f} ms" for p, s in seconds.items()), key["rows"], dim, metric,
             choice["calibration_s"])
    diskcache.store("knn-calibration", key, lambda tmp: (tmp / "choice.json").write_text(json.dumps(choice)),
                    "the kNN search path is calibrated again in every process")
    return {**choice, "source": "calibrated"}
