"""``mdav``: k-anonymity by MDAV microaggregation (Maximum Distance to Average Vector;
Domingo-Ferrer & Torra, 2005), within each class so labels stay exact.

Each class is partitioned into groups of k..2k-1 records; every record is released as
its group's mean with its (exact) label, so the release has one row per kept record, in
the original order, and k or more identical rows per group.  ``groups_[i]`` lists the
members of the group behind released row i.  A class with fewer than k records cannot
form a group and is suppressed (left out; counted in ``release_info_["n_suppressed"]``).
Queries pass through unchanged (mdav protects the training release only).

What it gives: no released vector is built from fewer than k records, so a released row
cannot be linked to fewer than k originals.  What it does not: k-anonymity is not
differential privacy: an attacker who knows k-1 members of a group recovers the last one
from the mean, group means of tight groups stay close to their members, and the labels
(hence each class's size) are released exactly.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from fedsim.anonymizers import _ops
from fedsim.anonymizers.base import Anonymizer, check_device, check_int
from fedsim.anonymizers.clustering import group_means, size_summary

log = logging.getLogger(__name__)


@torch.no_grad()
def mdav_partition(X: torch.Tensor, k: int) -> list[np.ndarray]:
    """MDAV groups (row indices of X) of size k..2k-1 covering all rows; needs len(X) >= k.

    Removed rows are masked and the working copy is compacted once half of it is dead, so
    each step costs a few matrix-vector products over the remaining records."""
    idx = torch.arange(X.shape[0], device=X.device)
    Xa, sq = X, (X * X).sum(1)
    alive = torch.ones(len(idx), dtype=torch.bool, device=X.device)
    n_alive = len(idx)
    total = X.sum(0, dtype=torch.float64)
    groups: list[torch.Tensor] = []
    inf = torch.tensor(float("inf"), device=X.device)

    def farthest_from(v: torch.Tensor) -> int:
        return int(torch.argmax(torch.where(alive, sq - 2 * (Xa @ v), -inf)))

    def distances_to(r: int) -> torch.Tensor:
        d = torch.where(alive, sq - 2 * (Xa @ Xa[r]) + sq[r], inf)
        d[r] = -inf  # the seed record always belongs to its own group
        return d

    def remove(pos: torch.Tensor) -> None:
        nonlocal total, n_alive
        groups.append(idx[pos])
        alive[pos] = False
        total = total - Xa[pos].sum(0, dtype=torch.float64)
        n_alive -= len(pos)

    def compact() -> None:
        nonlocal Xa, sq, idx, alive
        if n_alive < len(alive) // 2:
            Xa, sq, idx = Xa[alive], sq[alive], idx[alive]
            alive = torch.ones(len(idx), dtype=torch.bool, device=X.device)

    while n_alive >= 3 * k:
        r = farthest_from((total / n_alive).to(X.dtype))
        d_r = distances_to(r)
        remove(d_r.topk(k, largest=False).indices)
        s = int(torch.argmax(torch.where(alive, d_r, -inf)))  # farthest remaining record from x_r
        remove(distances_to(s).topk(k, largest=False).indices)
        compact()
    if n_alive >= 2 * k:
        r = farthest_from((total / n_alive).to(X.dtype))
        remove(distances_to(r).topk(k, largest=False).indices)
    if n_alive:
        groups.append(idx[alive])
    return [g.cpu().numpy() for g in groups]


class MDAV(Anonymizer):
    """``mdav`` (see the module docstring): parameter ``k`` >= 2."""

    name = "mdav"

    def __init__(self, k: int, device: str = "auto", seed: int = 0, key: int = 0) -> None:
        super().__init__(seed=seed, key=key)
        self.k = check_int("k", k, low=2)
        self.device = check_device(device)

    def check_data(self, n_samples, n_features):
        super().check_data(n_samples, n_features)
        if self.k > n_samples:
            raise ValueError(f"k must be in [2, {n_samples}] (the number of records), got {self.k}")

    def _fit(self, X, y):
        if y is None:
            raise ValueError("mdav: fit needs the labels y (groups are formed within each class)")
        dev = _ops.device_for(self.device)
        Xt = _ops.tensor(X, dev)
        group_of = np.full(len(X), -1, dtype=np.int64)
        n_groups = 0
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            if len(members) < self.k:
                continue
            for g in mdav_partition(Xt[torch.from_numpy(members).to(dev)], self.k):
                group_of[members[g]] = n_groups
                n_groups += 1
        self.group_of_ = group_of
        self.n_suppressed_ = int((group_of < 0).sum())
        if self.n_suppressed_:
            log.info("mdav: %d records of classes with fewer than k=%d records suppressed",
                     self.n_suppressed_, self.k)

    def _release(self, X, y):
        if len(X) != len(self.group_of_):
            raise ValueError("mdav: release(X, y) must get the data given to fit")
        n_groups = int(self.group_of_.max()) + 1
        means, members = group_means(X, self.group_of_, n_groups)
        kept = np.flatnonzero(self.group_of_ >= 0)
        self.groups_ = [members[g] for g in self.group_of_[kept]]
        info = {"k": self.k, "n_groups": n_groups, "n_suppressed": self.n_suppressed_, **size_summary(members)}
        return means[self.group_of_[kept]], y[kept], info

    def queries_in_clear(self) -> bool:
        return True

    def _transform_queries(self, Q):
        return Q.copy()
