"""Which originals stand behind each released row, and which pairs the attacker knows.

A release of m rows relates to the n originals through ``groups``:

* ``groups=None`` and m == n: per-record method, released row j comes from X[j];
* ``groups=None`` and m != n: no correspondence is known (a synthesizing method such as a
  GAN): every released row is treated as synthetic;
* ``groups`` = list of m index arrays: released row j was built from X[groups[j]]
  (aggregating methods: kmeans centroids, MDAV group means, ...). An empty entry marks a
  synthetic row with no source.

Metrics that need a source (reconstruction error, re-identification, inversion) use only
the rows that have one; membership inference counts every original as a member as soon as
one released row is synthetic. The *target* of a released row (what an inversion should
recover) is the mean of its sources, which is the row itself for per-record methods.

Memory: identical groups are stored once (rows of MDAV or density_based releases share
their group), and nothing expands rows × members, so a release of n rows that all come
from one cluster of n originals costs O(n), not O(n²).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: rows of X gathered at once when computing group statistics
BLOCK_ELEMENTS = 2**23


@dataclass
class Pairs:
    n: int  # number of originals
    m: int  # number of released rows
    row_group: np.ndarray  # (m,) id of the (deduplicated) group behind each row, -1 = synthetic
    g_members: np.ndarray  # members of group g: g_members[g_offsets[g]:g_offsets[g + 1]]
    g_offsets: np.ndarray  # (G + 1,)
    aggregating: bool  # True when built from ``groups``
    _single: np.ndarray | None = field(default=None, repr=False)  # original -> its only group

    @property
    def g_sizes(self) -> np.ndarray:
        return np.diff(self.g_offsets)

    @property
    def sizes(self) -> np.ndarray:
        """Number of sources of each released row (0 for synthetic rows)."""
        return np.where(self.row_group >= 0, self.g_sizes[np.maximum(self.row_group, 0)] if len(self.g_sizes) else 0, 0)

    @property
    def sourced(self) -> np.ndarray:
        """Released rows that have at least one source."""
        return np.flatnonzero(self.sizes > 0)

    def members_of(self, gids: np.ndarray) -> np.ndarray:
        """Sorted unique originals in the groups ``gids``."""
        gids = np.unique(np.asarray(gids, dtype=np.int64))
        gids = gids[gids >= 0]
        if len(gids) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([self.g_members[self.g_offsets[g] : self.g_offsets[g + 1]] for g in gids]))

    def members_of_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.members_of(self.row_group[np.asarray(rows, dtype=np.int64)])

    def member_set(self) -> np.ndarray:
        """Originals that contributed to the release (the members for membership inference):
        the union of the groups, or all originals when some row is synthetic (a synthesizer
        is fitted on the client's whole training set)."""
        if (self.row_group < 0).any():
            return np.arange(self.n, dtype=np.int64)
        return np.unique(self.g_members)

    def group_stats(self, X: np.ndarray, gids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (float64) and mean squared distance to the mean of each group in ``gids``."""
        gids = np.asarray(gids, dtype=np.int64)
        means = np.zeros((len(gids), X.shape[1]))
        spread = np.zeros(len(gids))
        budget = max(1, BLOCK_ELEMENTS // max(1, X.shape[1]))
        start = 0
        while start < len(gids):  # blocks of whole groups with about ``budget`` members
            sizes = self.g_sizes[gids[start:]]
            stop = start + max(1, int(np.searchsorted(np.cumsum(sizes), budget, side="right")))
            block = gids[start:stop]
            idx = np.concatenate([self.g_members[self.g_offsets[g] : self.g_offsets[g + 1]] for g in block])
            sz = self.g_sizes[block]
            owner = np.repeat(np.arange(len(block)), sz)
            starts = np.cumsum(sz) - sz
            rows = np.asarray(X[idx], dtype=np.float64)
            mu = np.add.reduceat(rows, starts, axis=0) / sz[:, None]
            dev = rows - mu[owner]
            means[start:stop] = mu
            spread[start:stop] = np.add.reduceat((dev * dev).sum(1), starts) / sz
            start = stop
        return means, spread

    def targets(self, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Mean of the sources of each of ``rows`` (float64), shape (len(rows), d); rows must
        have a source."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.aggregating:
            return np.asarray(X[rows], dtype=np.float64)
        gids, inverse = np.unique(self.row_group[rows], return_inverse=True)
        return self.group_stats(X, gids)[0][inverse]

    def sample_members(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One source drawn uniformly from the group of each of ``rows`` (rows must have one);
        the row's own original for per-record releases."""
        gids = self.row_group[np.asarray(rows, dtype=np.int64)]
        sizes = self.g_sizes[gids]
        pick = np.minimum((rng.random(len(gids)) * sizes).astype(np.int64), sizes - 1)
        return self.g_members[self.g_offsets[gids] + pick]

    def in_group(self, originals: np.ndarray, gids: np.ndarray) -> np.ndarray:
        """Elementwise: is original ``originals[...]`` a member of group ``gids[...]``?"""
        originals, gids = np.broadcast_arrays(np.asarray(originals, np.int64), np.asarray(gids, np.int64))
        if not self.aggregating:
            return (originals == gids) & (gids >= 0)
        if self._single is None:
            counts = np.bincount(self.g_members, minlength=self.n)
            if counts.max(initial=0) <= 1:
                single = np.full(self.n, -1, dtype=np.int64)
                single[self.g_members] = np.repeat(np.arange(len(self.g_sizes)), self.g_sizes)
                self._single = single
        if self._single is not None:
            return (self._single[originals] == gids) & (gids >= 0)
        out = np.zeros(originals.shape, dtype=bool)  # overlapping groups: check one by one
        for pos in zip(*np.nonzero(gids >= 0)):
            g = gids[pos]
            members = self.g_members[self.g_offsets[g] : self.g_offsets[g + 1]]
            out[pos] = originals[pos] in members
        return out


def build_pairs(n: int, m: int, groups) -> Pairs:
    if groups is None:
        if m == n:
            ids = np.arange(n, dtype=np.int64)
            return Pairs(n, m, ids, ids, np.arange(n + 1, dtype=np.int64), False)
        return Pairs(n, m, np.full(m, -1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64), False)
    groups = list(groups)
    if len(groups) != m:
        raise ValueError(f"groups must have one entry per released row ({m}), got {len(groups)}")
    row_group = np.full(m, -1, dtype=np.int64)
    by_object: dict[int, int] = {}  # rows sharing one array object share its group
    by_content: dict[bytes, int] = {}
    unique: list[np.ndarray] = []
    for j, g in enumerate(groups):
        gid = by_object.get(id(g))
        if gid is None:
            a = np.unique(np.asarray(g, dtype=np.int64).ravel())
            if a.size and (a[0] < 0 or a[-1] >= n):
                raise ValueError(f"group indices must lie in [0, {n})")
            if a.size == 0:
                gid = -1
            else:
                gid = by_content.setdefault(a.tobytes(), len(unique))
                if gid == len(unique):
                    unique.append(a)
            by_object[id(g)] = gid
        row_group[j] = gid
    sizes = [len(a) for a in unique]
    members = np.concatenate(unique) if unique else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return Pairs(n, m, row_group, members, offsets, True)


def split_aux(pairs: Pairs, aux_fraction: float, max_samples: int, rng: np.random.Generator,
              n_aux: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Released rows whose (original, released) pair the attacker knows, and the others.

    ``n_aux`` rows when given, else ``round(aux_fraction * s)`` of the s sourced rows (at
    least 2 when aux_fraction > 0 and s >= 3); always leaving one row out, at most
    ``max_samples``; drawn with ``rng``.
    """
    sourced = rng.permutation(pairs.sourced)
    s = len(sourced)
    if n_aux is None:
        n_aux = int(round(aux_fraction * s))
        if aux_fraction > 0 and s >= 3:
            n_aux = max(n_aux, 2)
    n_aux = max(0, min(n_aux, s - 1, int(max_samples)))
    return np.sort(sourced[:n_aux]), np.sort(sourced[n_aux:])
