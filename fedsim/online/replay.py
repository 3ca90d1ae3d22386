"""Generative replay for the server's online learners.

A class-conditional GAN (the same conditional MLP pair as the ``gan`` anonymizer) keeps
training on every round's received embeddings -- one generator for the whole stream, never
re-initialised.  After each round it generates samples FOR chosen labels (balanced over
the classes seen so far) into a bounded, class-balanced replay memory; the next rounds mix
a share of that memory into the classifiers' training batches.

Fixes over the original study: the GAN is conditional, so replayed samples keep the label
they were generated for (the study labelled unconditional samples with a kNN fitted on data
that already held synthetic samples, compounding errors); the memory is bounded and
class-balanced (the study's grew without limit until 90% of each batch was synthetic);
RNGs are seeded once per run, not reset every round; generator time is counted in
training time.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from fedsim.anonymizers.gan import _Net, _materialise, _one_thread_on_cpu, label_counts, train_epoch
from fedsim.device import best_device


#: suffix of the twin of a classifier trained with generative replay ("knn+replay")
REPLAY_SUFFIX = "+replay"


class ReplayGenerator:
    """A conditional GAN trained continually on (X, y) batches of a ``num_classes`` problem."""

    def __init__(self, num_classes: int, dim: int, latent_dim: int = 64, lr: float = 2e-4, n_epochs: int = 10,
                 batch_size: int = 32, seed: int = 0, device: str = "auto") -> None:
        self.num_classes, self.dim, self.latent_dim = num_classes, dim, latent_dim
        self.n_epochs, self.batch_size = n_epochs, batch_size
        self.device = best_device(device)
        init = torch.Generator().manual_seed(seed)
        emb = min(50, max(4, num_classes))
        self.G = _materialise(_Net(latent_dim, num_classes, dim, emb), self.device, init)
        self.D = _materialise(_Net(dim, num_classes, 1, emb), self.device, init)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=lr, betas=(0.5, 0.999))
        self.gen = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.rng = np.random.default_rng(seed + 2)
        # running moments of everything received: the GAN works on standardised features
        self._n, self._sum, self._sumsq = 0, np.zeros(dim), np.zeros(dim)
        self.seen = np.zeros(num_classes, dtype=np.int64)
        self.losses_: list[tuple[float, float]] = []

    def _moments(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self._sum / self._n
        std = np.sqrt(np.maximum(self._sumsq / self._n - mean**2, 0.0))
        std[std == 0] = 1.0
        return mean.astype(np.float32), std.astype(np.float32)

    def update(self, X: np.ndarray, y: np.ndarray) -> float:
        """Continue training on one round's received batch; returns the seconds spent."""
        t0 = time.perf_counter()
        X64 = np.asarray(X, np.float64)
        self._n += len(X64)
        self._sum += X64.sum(0)
        self._sumsq += (X64 * X64).sum(0)
        self.seen += np.bincount(y, minlength=self.num_classes)
        mean, std = self._moments()
        dev = self.device
        Xs = torch.from_numpy((np.asarray(X, np.float32) - mean) / std).to(dev)
        Y = torch.from_numpy(np.asarray(y, np.int64)).to(dev)
        with _one_thread_on_cpu(dev):
            for _ in range(self.n_epochs):
                self.losses_.append(train_epoch(self.G, self.D, self.opt_g, self.opt_d, Xs, Y, self.batch_size,
                                                self.latent_dim, self.gen))
        return time.perf_counter() - t0

    @torch.no_grad()
    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n embeddings generated for labels spread evenly over the classes seen so far."""
        classes = np.flatnonzero(self.seen)
        if n <= 0 or len(classes) == 0:
            return np.empty((0, self.dim), np.float32), np.empty(0, np.int64)
        y = self.rng.permutation(np.repeat(classes, label_counts(np.ones(len(classes)), n)))
        yt = torch.from_numpy(y).to(self.device)
        z = torch.randn(n, self.latent_dim, generator=self.gen, device=self.device)
        mean, std = self._moments()
        return self.G.eval()(z, yt).float().cpu().numpy() * std + mean, y.astype(np.int64)


class ReplayMemory:
    """Bounded, class-balanced store of generated samples; the newest are kept."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.X: np.ndarray | None = None
        self.y = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self.y)

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        if len(y) == 0:
            return
        X = np.asarray(X, np.float32)
        self.X = X if self.X is None else np.concatenate([self.X, X])
        self.y = np.concatenate([self.y, np.asarray(y, np.int64)])
        if len(self.y) > self.capacity:
            classes, counts = np.unique(self.y, return_counts=True)
            quota = _fair_quota(counts, self.capacity)
            keep = np.concatenate([np.flatnonzero(self.y == c)[-q:] if q else np.empty(0, np.int64)
                                   for c, q in zip(classes, quota)])
            keep.sort()
            self.X, self.y = self.X[keep], self.y[keep]

    def sample(self, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """floor(fraction * len) stored samples, drawn without replacement."""
        n = int(math.floor(fraction * len(self)))
        if n == 0 or self.X is None:
            return np.empty((0, 0), np.float32), np.empty(0, np.int64)
        idx = self.rng.choice(len(self), size=n, replace=False)
        return self.X[idx], self.y[idx]


def _fair_quota(counts: np.ndarray, capacity: int) -> np.ndarray:
    """Per-class limits summing to at most ``capacity``: equal shares, with the share of a
    class that has fewer samples handed to the others (water filling)."""
    quota = np.zeros(len(counts), dtype=np.int64)
    left, open_ = capacity, np.ones(len(counts), bool)
    while left > 0 and open_.any():
        share = max(1, left // int(open_.sum()))
        for i in np.flatnonzero(open_):
            take = min(share, counts[i] - quota[i], left)
            quota[i] += take
            left -= take
            if quota[i] >= counts[i]:
                open_[i] = False
            if left == 0:
                break
    return quota
