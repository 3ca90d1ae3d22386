"""Which of a client's records arrive in each online round.

Each class's records are shuffled once (seeded), and round ``r`` takes the next slice of
every class queue.  The batch of round ``r`` is therefore a pure function of (labels,
seed, batch size, sampling, r): a client process that starts fresh for every message (the
deployment engine) draws exactly what a long-lived one would, no record is drawn twice,
and no "seen" set is kept (the original study hashed every embedding into a Python set
and could loop forever when a class ran dry).

Two ways to split ``batch_size`` over classes:

* ``balanced`` (the study's protocol): equal numbers per class the client has, the
  remainder going to classes in a seeded order that rotates every round;
* ``stratified``: proportional to the client's own label histogram (largest remainders),
  so a non-IID client's stream mirrors its partition and does not run dry early.
"""

from __future__ import annotations

import numpy as np

from fedsim.seeding import derive_seed

SAMPLINGS = ("balanced", "stratified")


class OutOfData(ValueError):
    """A client cannot fill a round's batch from its unseen records."""


def _largest_remainders(weights: np.ndarray, n: int, order: np.ndarray) -> np.ndarray:
    share = weights / weights.sum() * n
    counts = np.floor(share).astype(np.int64)
    rest = int(n - counts.sum())
    frac = share - counts
    ranked = order[np.argsort(-frac[order], kind="stable")]  # ties broken by the seeded order
    counts[ranked[:rest]] += 1
    return counts


class BatchStream:
    """Class-balanced (or stratified) batches of record indices, round after round."""

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int, sampling: str = "balanced",
                 client: int | str = 0) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.sampling = sampling
        self.client = client
        self.classes, counts = np.unique(self.labels, return_counts=True)
        if len(self.classes) == 0:
            raise OutOfData(f"client {client} has no training records")
        self.available = counts
        rng = np.random.default_rng(derive_seed(seed, "online-stream", client))
        self.queues = [rng.permutation(np.flatnonzero(self.labels == c)) for c in self.classes]
        self.tie_order = rng.permutation(len(self.classes))

    def quotas(self, round_index: int) -> np.ndarray:
        """Records of each class (``self.classes`` order) drawn in ``round_index``."""
        k = len(self.classes)
        weights = np.ones(k) if self.sampling == "balanced" else self.available.astype(np.float64)
        # the remainder goes to the next classes in a seeded cycle, so over rounds every
        # class gets its fair share
        order = np.roll(self.tie_order, -round_index * (self.batch_size % k))
        return _largest_remainders(weights, self.batch_size, order)

    def batch(self, round_index: int) -> np.ndarray:
        """Indices (into ``labels``) of round ``round_index``'s batch, class by class."""
        used = np.zeros(len(self.classes), dtype=np.int64)
        for r in range(round_index):
            used += self.quotas(r)
        q = self.quotas(round_index)
        short = np.flatnonzero(used + q > self.available)
        if len(short):
            c = short[0]
            raise OutOfData(
                f"client {self.client} runs out of data in round {round_index + 1}: class "
                f"{int(self.classes[c])} has {int(self.available[c])} records, the rounds so far need "
                f"{int(used[c] + q[c])}; lower online.batch_size or online.rounds, or use "
                f"online.sampling = \"stratified\" for non-IID partitions")
        return np.concatenate([queue[u:u + n] for queue, u, n in zip(self.queues, used, q)])

    def rounds_available(self) -> int:
        """How many full rounds this client can serve."""
        used = np.zeros(len(self.classes), dtype=np.int64)
        r = 0
        while True:
            used += self.quotas(r)
            if (used > self.available).any():
                return r
            r += 1
