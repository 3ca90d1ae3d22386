"""One-to-one assignment: a per-record release is a bijection of the originals.

Linking each released row to its nearest original independently lets several rows claim
the same original, which a per-record release rules out: every original stands behind
exactly one released row. The attacker who knows this solves the assignment problem — the
bijection with the least total cost, i.e. the most likely one when the cost is the
negative log-likelihood of the mechanism (``attacks.noise``) — and beats independent
nearest-neighbour linking whenever neighbours compete (strong noise).

Blocks. Rows and candidates are split into blocks that cannot be matched across (one per
released label when the labels are in clear and used: a row of class c comes from an
original of class c). Each block of at most ``DENSE_MAX`` rows and columns is solved
exactly by ``scipy.optimize.linear_sum_assignment`` on its dense cost matrix: O(b²)
memory and O(b³) time in the worst case (about 0.05 s for b = 1,250 on one core). Larger
blocks keep only the ``SPARSE_K`` cheapest candidates of every row (chunked k-NN) and
solve the sparse problem with ``scipy.sparse.csgraph.min_weight_full_bipartite_matching``
(LAPJVsp): O(b k) memory. So that a full matching always exists, every row may stay
unmatched (a dummy column) and so may every original (a dummy row), each at a cost
``BIG`` above any kept edge; the optimum is the exact assignment restricted to the kept
candidates. A row whose source is not among its ``SPARSE_K`` nearest cannot be linked
to it anyway by any nearest-first rule.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from fedsim.privacy.geometry import cost_matrix, knn

#: largest block (rows or columns) solved with a dense cost matrix
DENSE_MAX = 2048
#: candidates per row kept in larger blocks
SPARSE_K = 32


def blocks(n_rows: int, n_cols: int, row_labels: np.ndarray | None,
           col_labels: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, columns) index pairs that may be matched with each other."""
    if row_labels is None or col_labels is None:
        return [(np.arange(n_rows), np.arange(n_cols))]
    return [(np.flatnonzero(row_labels == c), np.flatnonzero(col_labels == c)) for c in np.unique(row_labels)]


def _sparse(Z: np.ndarray, DB: np.ndarray, metric: str, device: torch.device) -> np.ndarray:
    m, n = len(Z), len(DB)
    dist, idx = knn(Z, DB, min(SPARSE_K, n), device, metric="l2" if metric == "l2sq" else metric)
    cost = dist * dist if metric == "l2sq" else dist
    k = idx.shape[1]
    big = 2.0 * float(cost.max(initial=0.0)) + 1.0
    rows = np.repeat(np.arange(m), k)
    cols = idx.ravel()
    # real edges; row j's dummy column n + j; original i's dummy row m + i; and the
    # transposed edges m + i -> n + j that pair the two dummies of a real match
    r = np.concatenate([rows, np.arange(m), m + np.arange(n), m + cols])
    c = np.concatenate([cols, n + np.arange(m), np.arange(n), n + rows])
    w = np.concatenate([cost.ravel(), np.full(m, big), np.full(n, big), np.zeros(m * k)]) + 1.0  # > 0
    graph = csr_matrix((w, (r, c)), shape=(m + n, n + m))
    _, col_of = min_weight_full_bipartite_matching(graph)
    out = col_of[:m]
    return np.where(out < n, out, -1)


def assign(Z: np.ndarray, DB: np.ndarray, metric: str, device: torch.device,
           row_labels: np.ndarray | None = None, col_labels: np.ndarray | None = None) -> np.ndarray:
    """Row of ``DB`` assigned to each row of ``Z`` (-1: none) by the minimum-cost
    one-to-one assignment under ``metric`` (``geometry.cost_matrix``), block by block."""
    out = np.full(len(Z), -1, dtype=np.int64)
    for rows, cols in blocks(len(Z), len(DB), row_labels, col_labels):
        if len(rows) == 0 or len(cols) == 0:
            continue
        if max(len(rows), len(cols)) <= DENSE_MAX:
            r, c = linear_sum_assignment(cost_matrix(Z[rows], DB[cols], metric, device))
            out[rows[r]] = cols[c]
        else:
            found = _sparse(Z[rows], DB[cols], metric, device)
            out[rows[found >= 0]] = cols[found[found >= 0]]
    return out
