"""Nearest-neighbour search over a fixed database: torch (exact fp32, or a bf16 prefilter
re-ranked exactly in fp32) and faiss.

Every search returns (distances ascending, database indices) like scikit-learn's
``kneighbors``: cosine distance ``1 - cos`` on L2-normalised vectors, or euclidean distance.
The torch searches process queries in chunks so no chunk's scores exceed ``max_chunk_bytes``.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch


def _distances(metric: str, q: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Distances from exact scores: ``q . x`` (cosine) or ``2 q . x - |x|^2`` (euclidean)."""
    if metric == "cosine":
        return (1.0 - score).clamp_min(0.0)
    return ((q * q).sum(1, keepdim=True) - score).clamp_min(0.0).sqrt()


def _hi_lo(v: torch.Tensor) -> torch.Tensor:
    """``v`` as two bf16 columns whose sum is ``v`` to ~16 bits (one bf16 keeps only 8)."""
    hi = v.bfloat16()
    return torch.stack([hi, (v - hi.float()).bfloat16()], dim=1)


class TorchSearch:
    """Chunked matrix product + top-k on the database's device.

    With ``bf16`` a query chunk is first scored against a cached bfloat16 copy of the
    database, and the best ``k + margin`` candidates are re-ranked exactly in fp32.  The
    approximate score is one matrix product that yields minus the distance (``-|q - x|^2``,
    or ``cos - 1``): vectors are centred on the database mean and per-row and per-query fp32
    terms ride along as extra hi/lo bf16 columns.  So bf16 rounds numbers the size of the
    neighbours' distances, not of the embeddings' norms, and no fp32 pass over the scores
    is needed.
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

    def search(self, Q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_db, d = self.X.shape
        k = min(k, n_db)
        n_cand = min(k + self.margin, n_db)
        prefilter = self.bf16 and n_cand < n_db
        row_bytes = (2 * n_db + 4 * n_cand * d) if prefilter else 4 * n_db
        chunk = max(1, self.max_chunk_bytes // row_bytes)
        dists, idxs = [], []
        with torch.inference_mode():
            for q in Q.split(chunk):
                if prefilter:
                    cand = self._approx(q).topk(n_cand, dim=1).indices
                    top, pos = self._exact(q, cand).topk(k, dim=1)
                    idx = cand.gather(1, pos)
                else:
                    top, idx = self._exact(q, None).topk(k, dim=1)
                dists.append(_distances(self.metric, q, top))
                idxs.append(idx)
        return torch.cat(dists), torch.cat(idxs)

    def _exact(self, q: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
        """fp32 scores against the whole database, or against each query's candidates."""
        if cand is None:
            sim, sqnorm = q @ self.X.T, self.sqnorm
        else:
            sim = torch.bmm(self.X[cand], q.unsqueeze(2)).squeeze(2)
            sqnorm = None if self.sqnorm is None else self.sqnorm[cand]
        return sim if sqnorm is None else 2.0 * sim - sqnorm


def import_faiss():
    """faiss, imported only when asked for; a ValueError (a parameter problem) when absent."""
    try:
        return importlib.import_module("faiss")
    except ImportError:
        raise ValueError("backend 'faiss' needs the faiss package: pip install faiss-cpu "
                         "(or pip install 'fedsim[faiss]')") from None


class FaissSearch:
    """faiss exact flat index on the CPU: inner product on normalised vectors, or L2."""

    def __init__(self, X: torch.Tensor, metric: str) -> None:
        faiss = import_faiss()
        self.faiss, self.metric = faiss, metric
        self.index = (faiss.IndexFlatIP if metric == "cosine" else faiss.IndexFlatL2)(X.shape[1])
        self.index.add(np.ascontiguousarray(X.cpu().numpy(), dtype=np.float32))

    def search(self, Q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.faiss.omp_set_num_threads(torch.get_num_threads())  # the CPUs this process was granted
        score, idx = self.index.search(np.ascontiguousarray(Q.cpu().numpy()), min(k, self.index.ntotal))
        # IndexFlatL2 returns squared distances
        dist = np.maximum(1.0 - score, 0.0) if self.metric == "cosine" else np.sqrt(np.maximum(score, 0.0))
        return torch.from_numpy(dist).to(Q.device), torch.from_numpy(idx).to(Q.device)
