"""Class-balanced reservoir: which samples a bounded kNN memory keeps.

While at most ``memory_size`` samples have been seen, everything is kept.  After that every
seen class keeps at most an equal share (``memory_size // n_classes``, the remainder going
to the lowest classes), and within a class the kept set is a uniform sample of that class's
stream: Vitter's algorithm R with a per-class seen counter.

Batches are processed class by class with the quotas of the classes known at the end of the
batch.  That gives the same distribution as applying the rule sample by sample: a class's
quota never grows (it only shrinks as classes appear), evicting uniformly at random from a
uniform sample leaves a uniform sample, and algorithm R turns a uniform sample of the first
``t`` items into one of the first ``t + 1`` whatever capacity it started from.
"""

from __future__ import annotations

import numpy as np


def quotas(memory_size: int, n_classes: int) -> np.ndarray:
    """Equal shares of the memory; the first ``memory_size % n_classes`` classes get one more."""
    share = np.full(n_classes, memory_size // n_classes, np.int64)
    share[: memory_size % n_classes] += 1
    return share


def select(stored: np.ndarray, incoming: np.ndarray, classes: np.ndarray, seen: np.ndarray,
           memory_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which stored rows survive and which incoming rows are added, both as sorted indices.

    ``stored``/``incoming`` are labels; ``seen`` counts every sample seen per class in
    ``classes`` including the incoming batch.
    """
    if seen.sum() <= memory_size:
        return np.arange(len(stored)), np.arange(len(incoming))
    n_old = len(stored)
    kept: list[np.ndarray] = []
    for c, quota, seen_c in zip(classes, quotas(memory_size, len(classes)), seen):
        old = np.flatnonzero(stored == c)
        new = np.flatnonzero(incoming == c)
        if len(old) > quota:  # the quota shrank: evict uniformly at random
            old = rng.choice(old, quota, replace=False)
        # Fewer kept than the quota means everything seen so far is kept: fill first.
        n_fill = min(quota - len(old), len(new))
        slots = np.concatenate([old, n_old + new[:n_fill]])
        rest = new[n_fill:]
        if len(rest):
            # Algorithm R: item number t (1-based in its class's stream) draws j in [0, t)
            # and replaces slot j when j < quota.
            t = seen_c - len(new) + n_fill + 1 + np.arange(len(rest))
            j = rng.integers(0, t)
            hit = j < quota
            order = np.flatnonzero(hit)[::-1]  # latest first: the last write to a slot wins
            slot, first = np.unique(j[order], return_index=True)
            slots[slot] = n_old + rest[order[first]]
        kept.append(slots)
    ids = np.sort(np.concatenate(kept))
    return ids[ids < n_old], ids[ids >= n_old] - n_old
