"""Self-training: refit the forward map on the attacker's own confident links.

Against a linear release (a projection) a handful of known pairs, or none (``SelfPCAMap``),
gives a rough map; the links it yields, though mostly wrong, contain a core of right ones.
The attacker takes the confident half — rows whose one-to-one assignment agrees with their
nearest neighbour, ranked by the gap to the second nearest — together with the known
pairs, refits the forward map original -> release on them (ridge, ``alignment.RidgeMap``,
α by leave-one-out), and links again. Right links reinforce each other; a few rounds turn
a rough map into an exact one (measured on cifar10-mini embeddings, ``benchmarks/
attack_table.py``: a random projection to 64 dimensions from 4 known pairs, 0.08 -> 1.0;
a raw pca-16 release, basis pooled over four clients, from no pair, 0.44 -> 1.0).

Stops after ``ROUNDS`` rounds, when fewer than ``STABLE`` of the links changed in a round,
or when after ``PATIENCE`` rounds fewer than ``ABANDON`` of the rows agree (nothing to
build on). Each round costs one ridge fit (SVD of at most n × d) and one assignment
(``attacks.assignment``).
"""

from __future__ import annotations

import numpy as np
import torch

from fedsim.privacy.alignment import RidgeMap
from fedsim.privacy.attacks.assignment import assign
from fedsim.privacy.geometry import knn

ROUNDS = 8
STABLE = 0.005
PATIENCE = 3
ABANDON = 0.05


def self_train(X: np.ndarray, X_rel: np.ndarray, rows: np.ndarray, cands: np.ndarray, aux: np.ndarray,
               Z: np.ndarray, DB: np.ndarray, linked: np.ndarray, device: torch.device,
               row_labels: np.ndarray | None = None, cand_labels: np.ndarray | None = None) -> np.ndarray:
    """Refined one-to-one links (an original per row of ``rows``, -1: none) of the released
    ``rows`` to the candidate originals ``cands``.

    ``Z`` and ``DB`` are those rows and candidates in the comparison space of the starting
    view, ``linked`` the assignment found there; ``aux`` the known pairs (released row i
    <-> original i: per-record releases only)."""
    R = np.asarray(X_rel[rows], dtype=np.float64)
    for step in range(ROUNDS):
        dist, idx = knn(Z, DB, 2, device)
        agree = (cands[idx[:, 0]] == linked) & (linked >= 0)
        if step >= PATIENCE and agree.mean() < ABANDON:
            break
        gap = dist[:, 1] - dist[:, 0] if dist.shape[1] > 1 else dist[:, 0]
        sure = np.flatnonzero(agree)
        sure = sure[np.argsort(-gap[sure], kind="stable")[: max(1, len(rows) // 2)]]
        src = np.concatenate([aux, linked[sure]]).astype(np.int64)
        dst = np.concatenate([aux, rows[sure]]).astype(np.int64)
        if len(src) < 2:
            break
        ridge = RidgeMap().fit(np.asarray(X[src], np.float64), np.asarray(X_rel[dst], np.float64))
        Z, DB = R, ridge.transform(X[cands])
        new = assign(Z, DB, "l2sq", device, row_labels, cand_labels)
        new = np.where(new >= 0, cands[np.maximum(new, 0)], -1)
        changed = float((new != linked).mean())
        linked = new
        if changed < STABLE:
            break
    return linked
