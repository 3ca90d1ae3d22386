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
"""

from __future__ import annotations

import numpy as np
import torch

MAX_CHUNK_BYTES = 128 * 2**20
#: extra candidates kept from the fast ranking before exact re-ranking
REFINE = 8


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
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean distances (q, k) and indices (q, k) of the k nearest rows of ``B``.

    ``exclude[i]`` (optional) is an index of ``B`` that query i may not return (its own row
    when ``Q`` is a subset of ``B``); -1 excludes nothing. Both arrays are centred by the mean
    of ``B``, so the float32 ranking loses little to cancellation.
    """
    Q = np.asarray(Q)
    B = np.asarray(B)
    if Q.ndim != 2 or B.ndim != 2 or Q.shape[1] != B.shape[1]:
        raise ValueError(f"knn needs (q, d) and (n, d) arrays, got {Q.shape} and {B.shape}")
    k = min(int(k), B.shape[0] - (1 if exclude is not None else 0))
    if k < 1 or Q.shape[0] == 0:
        return np.zeros((Q.shape[0], 0)), np.zeros((Q.shape[0], 0), dtype=np.int64)
    mu = B.mean(0, dtype=np.float64)
    B64 = as_tensor(B, device, mu, torch.float64)
    Bt = B64.float()
    bn = (Bt * Bt).sum(1)
    kk = min(k + REFINE, Bt.shape[0])
    ex = None if exclude is None else torch.from_numpy(np.asarray(exclude, np.int64)).to(device)
    chunk = _chunk_rows(Bt.shape[0], kk * Bt.shape[1])
    out_d, out_i = [], []
    with torch.inference_mode():
        for s in range(0, Q.shape[0], chunk):
            q64 = as_tensor(Q[s : s + chunk], device, mu, torch.float64)
            # |q|^2 is constant per row: ranking by |b|^2 - 2 q.b is enough (one fused op)
            rank = torch.addmm(bn, q64.float(), Bt.T, beta=1.0, alpha=-2.0)
            if ex is not None:
                e = ex[s : s + chunk]
                rows = torch.nonzero(e >= 0).squeeze(1)
                rank[rows, e[rows]] = float("inf")
            idx = rank.topk(kk, dim=1, largest=False).indices
            exact = (q64[:, None, :] - B64[idx]).norm(dim=2)
            if ex is not None:
                exact = exact.masked_fill(idx == ex[s : s + chunk, None], float("inf"))
            dist, order = exact.topk(k, dim=1, largest=False)
            out_d.append(dist.cpu())
            out_i.append(idx.gather(1, order).cpu())
    return torch.cat(out_d).numpy(), torch.cat(out_i).numpy()


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
