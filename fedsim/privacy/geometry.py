"""Chunked distance computations in torch shared by the privacy metrics.

Nothing here ever holds a full (n x n) distance matrix: queries are processed in chunks
sized so that one chunk of squared distances (and of gathered candidate rows) stays under
``MAX_CHUNK_BYTES``. Inputs and outputs are numpy; the work happens on the device given.

Nearest neighbours are found in two steps. The squared-distance expansion
``|q|^2 - 2 q.b + |b|^2`` (one float32 matrix product per chunk; ``|q|^2`` is constant per
query and left out) ranks the database and keeps a few more candidates than asked for; the
kept candidates' distances are then recomputed directly as ``|q - b|`` in float64, so an
exact copy has distance exactly 0 and distances dominated by a large common offset (a huge
noise vector) still order the candidates correctly (in float32 they tie, and ties would
count as re-identifications).

Other metrics (``metric="l1"`` or ``"linf"``, the likelihood distances of Laplace and
uniform noise; see ``attacks.noise``) are computed directly in float64 with
``torch.cdist`` per chunk, so they need no refinement. ``cost_matrix`` returns the dense
(q, n) cost of a block: only the assignment attack (``attacks.assignment``) uses it, on
blocks it bounds.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_CHUNK_BYTES = 128 * 2**20
#: extra candidates kept from the fast ranking before exact re-ranking
REFINE = 8
#: torch.cdist's p for each metric; "l2sq" is the squared Euclidean distance (costs only)
P_NORM = {"l2": 2.0, "l1": 1.0, "linf": float("inf")}


def as_tensor(A: np.ndarray, device: torch.device, center: np.ndarray | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Tensor of ``dtype`` on ``device``; optionally minus ``center`` (subtracted in float64)."""
    A = np.asarray(A, dtype=np.float64 if center is not None else None)
    if center is not None:
        A = A - center
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    return torch.from_numpy(np.ascontiguousarray(A, dtype=np_dtype)).to(device)


def _chunk_rows(n_db: int, width: int) -> int:
    return max(1, MAX_CHUNK_BYTES // (8 * max(n_db, width, 1)))


def knn(
    Q: np.ndarray,
    B: np.ndarray,
    k: int,
    device: torch.device,
    exclude: np.ndarray | None = None,
    metric: str = "l2",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances (q, k) and indices (q, k) of the k nearest rows of ``B`` under
    ``metric`` (``P_NORM``; Euclidean by default).

    ``exclude[i]`` (optional) is an index of ``B`` that query i may not return (its own row
    when ``Q`` is a subset of ``B``); -1 excludes nothing. Both arrays are centred by the mean
    of ``B``, so the float32 ranking loses little to cancellation.
    """
    if metric not in P_NORM:
        raise ValueError(f"metric must be one of {', '.join(P_NORM)}, got {metric!r}")
    Q = np.asarray(Q)
    B = np.asarray(B)
    if Q.ndim != 2 or B.ndim != 2 or Q.shape[1] != B.shape[1]:
        raise ValueError(f"knn needs (q, d) and (n, d) arrays, got {Q.shape} and {B.shape}")
    k = min(int(k), B.shape[0] - (1 if exclude is not None else 0))
    if k < 1 or Q.shape[0] == 0:
        return np.zeros((Q.shape[0], 0)), np.zeros((Q.shape[0], 0), dtype=np.int64)
    mu = B.mean(0, dtype=np.float64)
    B64 = as_tensor(B, device, mu, torch.float64)
    exact_metric = metric != "l2"  # computed exactly in float64: no fast ranking, no re-ranking
    Bt = None if exact_metric else B64.float()
    bn = None if exact_metric else (Bt * Bt).sum(1)
    kk = k if exact_metric else min(k + REFINE, B64.shape[0])
    ex = None if exclude is None else torch.from_numpy(np.asarray(exclude, np.int64)).to(device)
    chunk = _chunk_rows(B64.shape[0], kk * B64.shape[1])
    out_d, out_i = [], []
    with torch.inference_mode():
        for s in range(0, Q.shape[0], chunk):
            q64 = as_tensor(Q[s : s + chunk], device, mu, torch.float64)
            if exact_metric:
                rank = torch.cdist(q64, B64, p=P_NORM[metric])
            else:  # |q|^2 is constant per row: ranking by |b|^2 - 2 q.b is enough (one fused op)
                rank = torch.addmm(bn, q64.float(), Bt.T, beta=1.0, alpha=-2.0)
            if ex is not None:
                e = ex[s : s + chunk]
                rows = torch.nonzero(e >= 0).squeeze(1)
                rank[rows, e[rows]] = float("inf")
            if exact_metric:
                dist, idx = rank.topk(k, dim=1, largest=False)
                out_d.append(dist.cpu())
                out_i.append(idx.cpu())
                continue
            idx = rank.topk(kk, dim=1, largest=False).indices
            exact = (q64[:, None, :] - B64[idx]).norm(dim=2)
            if ex is not None:
                exact = exact.masked_fill(idx == ex[s : s + chunk, None], float("inf"))
            dist, order = exact.topk(k, dim=1, largest=False)
            out_d.append(dist.cpu())
            out_i.append(idx.gather(1, order).cpu())
    return torch.cat(out_d).numpy(), torch.cat(out_i).numpy()


def cost_matrix(Q: np.ndarray, B: np.ndarray, metric: str, device: torch.device) -> np.ndarray:
    """Dense float64 (q, n) costs between the rows of ``Q`` and ``B``: ``"l2sq"`` (squared
    Euclidean), ``"l2"``, ``"l1"`` or ``"linf"``; both centred by the mean of ``B``."""
    Q, B = np.asarray(Q), np.asarray(B)
    mu = B.mean(0, dtype=np.float64) if len(B) else None
    Bt = as_tensor(B, device, mu, torch.float64)
    p = P_NORM["l2" if metric == "l2sq" else metric]
    out = np.empty((Q.shape[0], B.shape[0]))
    chunk = _chunk_rows(B.shape[0], 1)
    with torch.inference_mode():
        for s in range(0, Q.shape[0], chunk):
            d = torch.cdist(as_tensor(Q[s : s + chunk], device, mu, torch.float64), Bt, p=p)
            out[s : s + chunk] = (d * d if metric == "l2sq" else d).cpu().numpy()
    return out


def row_costs(A: np.ndarray, B: np.ndarray, metric: str) -> np.ndarray:
    """Cost between ``A[t]`` and ``B[t]`` for every t (float64, same metrics as ``cost_matrix``)."""
    diff = np.abs(np.asarray(A, dtype=np.float64) - np.asarray(B, dtype=np.float64))
    if metric == "l1":
        return diff.sum(1)
    if metric == "linf":
        return diff.max(1) if diff.shape[1] else np.zeros(len(diff))
    sq = (diff * diff).sum(1)
    return sq if metric == "l2sq" else np.sqrt(sq)


def mean_pairwise_distance(A: np.ndarray, device: torch.device) -> float:
    """Mean Euclidean distance over all ordered pairs of distinct rows of ``A`` (chunked)."""
    A = np.asarray(A)
    n = A.shape[0]
    if n < 2:
        return float("nan")
    At = as_tensor(A, device, A.mean(0, dtype=np.float64))
    an = (At * At).sum(1)
    chunk = _chunk_rows(n, 1)
    total = 0.0
    with torch.inference_mode():
        for s in range(0, n, chunk):
            a = At[s : s + chunk]
            d2 = (an[s : s + chunk, None] - 2.0 * (a @ At.T) + an).clamp_min(0.0)
            r = torch.arange(a.shape[0], device=a.device)
            d2[r, r + s] = 0.0  # the diagonal is 0 exactly, not rounding noise
            total += float(d2.sqrt().sum(dtype=torch.float64))
    return total / (n * (n - 1))
