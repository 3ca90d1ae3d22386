"""``gan``: a class-conditional GAN trained on the client's own embeddings; the release is
synthetic embeddings with the labels they were generated FOR.

Fixes over the study: conditional on the label (a learned label embedding concatenated to
z and to the discriminator's input) instead of labelling samples afterwards with a kNN on
the originals; the discriminator step uses detached fakes; batches are reshuffled every
epoch with a seeded generator; the generator's last layer is linear and the data are
standardised per feature for training and de-standardised on output (the study's Tanh
bounded outputs to [-1, 1] whatever the embedding scale).  One GAN per client, fitted on
its training data only.

Labels of the release: ``sample_labels="histogram"`` (default) reproduces the client's
label histogram scaled to ``n_samples`` (largest remainders); ``"balanced"`` spreads
``n_samples`` evenly over the classes the client has.  Rows come in a seeded random order.
``groups_`` marks every row as synthetic (no source record).  Queries pass through
unchanged: the GAN protects the training set only.

What it gives: no released row is computed from a particular record.  What it does not:
no formal guarantee; a GAN trained long on few records can memorise and reproduce them,
and the release reveals the client's label histogram.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import nn

from fedsim.anonymizers import _ops
from fedsim.anonymizers.base import Anonymizer, check_choice, check_device, check_int, check_number

HIDDEN = 256


class _Net(nn.Module):
    """MLP on [input, label embedding]; LeakyReLU hidden layers, linear output."""

    def __init__(self, n_in: int, n_classes: int, n_out: int, emb_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_classes, emb_dim, device="meta")
        self.body = nn.Sequential(
            nn.Linear(n_in + emb_dim, HIDDEN, device="meta"), nn.LeakyReLU(0.2),
            nn.Linear(HIDDEN, HIDDEN, device="meta"), nn.LeakyReLU(0.2),
            nn.Linear(HIDDEN, n_out, device="meta"),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([x, self.embed(y)], 1))


def _materialise(net: nn.Module, device: torch.device, gen: torch.Generator) -> nn.Module:
    """Allocate and initialise from ``gen`` (built on the meta device, so the global RNG is
    never touched); the usual U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for linear layers."""
    net = net.to_empty(device=torch.device("cpu"))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.in_features)
                m.weight.uniform_(-bound, bound, generator=gen)
                m.bias.uniform_(-bound, bound, generator=gen)
            elif isinstance(m, nn.Embedding):
                m.weight.normal_(0.0, 1.0, generator=gen)
    return net.to(device)


@contextlib.contextmanager
def _one_thread_on_cpu(device: torch.device):
    """The GAN's steps are thousands of tiny ops: intra-op threads gain nothing on them and,
    when the cores are shared (several clients per machine), every parallel region waits
    for descheduled threads (measured: 170 s instead of 3 s for one test fit)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_epoch(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                Xs: torch.Tensor, Y: torch.Tensor, batch_size: int, latent_dim: int,
                gen: torch.Generator) -> tuple[float, float]:
    """One pass of conditional-GAN training over (standardised Xs, label indices Y), full
    batches only (a 1-row batch is all noise); returns the last (D loss, G loss)."""
    dev, n = Xs.device, len(Xs)
    bs = min(batch_size, n)
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(bs, 1, device=dev), torch.zeros(bs, 1, device=dev)
    order = torch.randperm(n, generator=gen, device=dev)
    for s in range(0, n - bs + 1, bs):
        b = order[s:s + bs]
        xb, yb = Xs[b], Y[b]
        fake = G(torch.randn(bs, latent_dim, generator=gen, device=dev), yb)
        loss_d = bce(D(xb, yb), ones) + bce(D(fake.detach(), yb), zeros)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        fake = G(torch.randn(bs, latent_dim, generator=gen, device=dev), yb)
        loss_g = bce(D(fake, yb), ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return loss_d.item(), loss_g.item()


def label_counts(hist: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to n, proportional to ``hist`` (largest remainders, ties to
    the lower class)."""
    share = hist / hist.sum() * n
    counts = np.floor(share).astype(np.int64)
    rest = n - counts.sum()
    order = np.lexsort((np.arange(len(hist)), -(share - counts)))
    counts[order[:rest]] += 1
    return counts


class GAN(Anonymizer):
    """``gan`` (see the module docstring)."""

    name = "gan"

    def __init__(self, n_epochs: int = 20, batch_size: int = 64, latent_dim: int = 64, lr: float = 2e-4,
                 n_samples: int | None = None, sample_labels: str = "histogram", device: str = "auto",
                 seed: int = 0, key: int = 0) -> None:
        super().__init__(seed=seed, key=key)
        self.n_epochs = check_int("n_epochs", n_epochs, low=1)
        self.batch_size = check_int("batch_size", batch_size, low=2)
        self.latent_dim = check_int("latent_dim", latent_dim, low=1)
        self.lr = check_number("lr", lr, low=0, low_open=True)
        self.n_samples = None if n_samples is None else check_int("n_samples", n_samples, low=1)
        self.sample_labels = check_choice("sample_labels", sample_labels, ("histogram", "balanced"))
        self.device = check_device(device)

    def _fit(self, X, y):
        if y is None:
            raise ValueError("gan: fit needs the labels y (the GAN is class-conditional)")
        dev = _ops.device_for(self.device)
        with _one_thread_on_cpu(dev):
            self._train(X, y, dev)

    def _train(self, X, y, dev):
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.class_counts_ = np.bincount(y_idx, minlength=len(self.classes_))
        mean = X.mean(0, dtype=np.float64)
        std = X.std(0, dtype=np.float64)
        std[std == 0] = 1.0
        self.mean_, self.std_ = mean.astype(np.float32), std.astype(np.float32)
        self.n_fit_ = len(X)

        gen_cpu = torch.Generator().manual_seed(self._seed_for("init"))
        n_cls, d = len(self.classes_), X.shape[1]
        emb = min(50, max(4, n_cls))
        G = _materialise(_Net(self.latent_dim, n_cls, d, emb), dev, gen_cpu)
        D = _materialise(_Net(d, n_cls, 1, emb), dev, gen_cpu)
        opt_g = torch.optim.Adam(G.parameters(), lr=self.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=self.lr, betas=(0.5, 0.999))
        gen = torch.Generator(device=dev).manual_seed(self._seed_for("train"))
        Xs = _ops.tensor((X - self.mean_) / self.std_, dev)
        Y = torch.from_numpy(y_idx.astype(np.int64)).to(dev)
        self.losses_ = np.asarray([train_epoch(G, D, opt_g, opt_d, Xs, Y, self.batch_size, self.latent_dim, gen)
                                   for _ in range(self.n_epochs)])
        self.generator_ = G.eval()

    def _labels(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.sample_labels == "histogram":
            counts = label_counts(self.class_counts_.astype(np.float64), n)
        else:
            counts = label_counts(np.ones(len(self.classes_)), n)
        return rng.permutation(np.repeat(np.arange(len(self.classes_)), counts))

    @torch.no_grad()
    def sample(self, n: int, stream: str = "release") -> tuple[np.ndarray, np.ndarray]:
        """n synthetic embeddings and the labels they were generated for."""
        self._check_fitted()
        dev = next(self.generator_.parameters()).device
        y_idx = self._labels(n, self._rng(stream + "-labels"))
        gen = torch.Generator(device=dev).manual_seed(self._seed_for(stream))
        out = np.empty((n, self.n_features_in_), dtype=np.float32)
        for s in range(0, n, 8192):
            yb = torch.from_numpy(y_idx[s:s + 8192]).to(dev)
            z = torch.randn(len(yb), self.latent_dim, generator=gen, device=dev)
            out[s:s + 8192] = self.generator_(z, yb).float().cpu().numpy()
        return out * self.std_ + self.mean_, self.classes_[y_idx]

    def _release(self, X, y):
        n = self.n_samples or self.n_fit_
        X_syn, y_syn = self.sample(n)
        self.groups_ = [np.zeros(0, dtype=np.int64)] * n
        info = {"n_epochs": self.n_epochs, "n_classes": len(self.classes_),
                "final_loss_d": float(self.losses_[-1, 0]) if len(self.losses_) else math.nan,
                "final_loss_g": float(self.losses_[-1, 1]) if len(self.losses_) else math.nan}
        return X_syn, y_syn, info

    def queries_in_clear(self) -> bool:
        return True

    def max_release_rows(self, n_samples: int) -> int:
        return self.n_samples or n_samples

    def _transform_queries(self, Q):
        return Q.copy()
