"""Linking released rows to originals by nearest neighbour, with ties and label blocks.

Shared by the linkage menu (``linkage``) and the attacker's view selection
(``alignment``). A released row is linked to its nearest original under the view's
metric; originals tied with the nearest (distance within ``REL_TOL`` relative, among the
``TIES`` nearest; e.g. duplicated originals) count as success too, since the attacker
cannot tell them apart. With labels, only originals carrying the row's released label are
candidates.
"""

from __future__ import annotations

import numpy as np
import torch

from fedsim.privacy.geometry import knn
from fedsim.privacy.pairs import Pairs

REL_TOL = 1e-9
TIES = 4


def nearest(Z: np.ndarray, DB: np.ndarray, metric: str, device: torch.device, z_labels: np.ndarray | None,
            db_labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(dist, idx), (q, TIES) each, padded with (inf, -1); label blocks when labels are given."""
    dist = np.full((len(Z), TIES), np.inf)
    idx = np.full((len(Z), TIES), -1, dtype=np.int64)
    if z_labels is None:
        d, i = knn(Z, DB, TIES, device, metric=metric)
        dist[:, : d.shape[1]], idx[:, : i.shape[1]] = d, i
        return dist, idx
    for c in np.unique(z_labels):
        rows, cols = np.flatnonzero(z_labels == c), np.flatnonzero(db_labels == c)
        if len(cols):
            d, i = knn(Z[rows], DB[cols], TIES, device, metric=metric)
            dist[rows, : d.shape[1]], idx[rows, : i.shape[1]] = d, cols[i]
    return dist, idx


def tied_hits(dist: np.ndarray, idx: np.ndarray, pairs: Pairs, rows: np.ndarray,
              members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per released row of ``rows``: (is a tied nearest one of its sources, is a tied nearest
    ``members[t]``)."""
    tied = (dist <= dist[:, :1] * (1.0 + REL_TOL)) & (idx >= 0)
    hits = (tied & pairs.in_group(np.maximum(idx, 0), pairs.row_group[rows][:, None])).any(1)
    return hits, (tied & (idx == members[:, None])).any(1)


def link_success(Z: np.ndarray, DB: np.ndarray, pairs: Pairs, rows: np.ndarray, device: torch.device,
                 metric: str = "l2") -> np.ndarray:
    """Boolean per row: is the nearest row of ``DB`` to ``Z[t]`` a source of ``rows[t]``?
    (``DB`` all n originals, both in the attacker's comparison space; ties as above.)"""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.zeros(0, dtype=bool)
    dist, idx = nearest(Z, DB, metric, device, None, None)
    return tied_hits(dist, idx, pairs, rows, np.full(len(rows), -1))[0]
