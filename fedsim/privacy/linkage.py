"""Re-identification (linkage) attack: can a released record be linked to its source?

Threat model. The attacker holds the client's original embeddings X (a leaked or public
copy of the data), the whole release, and a few known (original, released) pairs — the
aux pairs, ``aux_fraction`` of the released rows with a source. From the aux pairs it fits
maps between released and original space (``alignment``: identity, orthogonal Procrustes,
column matching, ridge; in both directions) and keeps the view that re-identifies best on
held-out aux pairs. It then puts every *other* released record and all n originals in that
view's comparison space and links the record to its nearest original (Euclidean).

``reidentification_rate`` = (1/|E|) Σ_{j∈E} 1[ min_{i∈S(j)} |u(r_j) − v(x_i)| ≤ min_i |u(r_j) − v(x_i)| ]

where E is a seeded sample (≤ ``max_samples``) of the released rows that have a source and
are not aux pairs, S(j) is the set of originals behind r_j (S(j) = {j} for per-record
methods, the group for aggregating methods), and (u, v) the view's maps of released and
original rows (reverse: u = f, v = id; forward: u = id, v = g). A released record is
re-identified when the nearest original is one of its sources (ties, e.g. duplicated
originals, count as success when the tied original is among the ``TIES`` nearest;
distances are float64 and a relative tolerance of 1e-9 absorbs their rounding).

Why it measures privacy: it is exactly what an adversary could do with the release, it is
invariant to the transformations that defeat the study's metrics (a column permutation or a
rotation gives overlap 0 and a large reconstruction error but a rate of 1), and it falls to
the random-guess level only when the release carries no record-level information.

``reidentification_baseline`` = mean_{j∈E} |S(j)| / n: the success rate of linking each
record to an original drawn uniformly at random (1/n for per-record methods, k/n for
groups of k). A rate near the baseline means linkage is no better than guessing.

Labels are not used for linking; restricting the search to originals with the released
label would be a stronger attack, so these rates are a lower bound on what an attacker
achieves.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fedsim.privacy.geometry import knn
from fedsim.privacy.pairs import Pairs

REL_TOL = 1e-9
TIES = 4


def link_success(Z: np.ndarray, DB: np.ndarray, pairs: Pairs, rows: np.ndarray, device: torch.device) -> np.ndarray:
    """Boolean per row: is the nearest row of ``DB`` to ``Z[t]`` a source of ``rows[t]``?

    ``Z`` holds the released ``rows`` and ``DB`` all n originals, both in the attacker's
    comparison space. Originals tied with the nearest (within ``REL_TOL``, among the
    ``TIES`` nearest) count too.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.zeros(0, dtype=bool)
    dist, idx = knn(Z, DB, TIES, device)
    tied = dist <= dist[:, :1] * (1.0 + REL_TOL)
    return (tied & pairs.in_group(idx, pairs.row_group[rows][:, None])).any(1)


def reidentification_rate(view, X: np.ndarray, X_rel: np.ndarray, pairs: Pairs,
                          evaluated: np.ndarray, device: torch.device) -> float:
    """Fraction of the ``evaluated`` released rows linked to (one of) their source(s),
    compared in the space of the attacker's ``view`` (``alignment.View``)."""
    if view is None or len(evaluated) == 0:
        return math.nan
    Z = view.release_side(X_rel[evaluated])
    return float(link_success(Z, view.original_side(X), pairs, evaluated, device).mean())


def reidentification_baseline(pairs: Pairs, evaluated: np.ndarray) -> float:
    """Success rate of linking each evaluated row to a uniformly random original."""
    if len(evaluated) == 0 or pairs.n == 0:
        return math.nan
    return float(np.minimum(pairs.sizes[evaluated], pairs.n).mean() / pairs.n)
