"""Fully connected head trained with cross-entropy on the embeddings.

A linear layer (``hidden=0``) or one ReLU hidden layer (optional ``dropout``), trained with
Adam on logits through ``nn.CrossEntropyLoss`` (which applies log-softmax itself: the study's
code applied softmax before it, twice).  Every ``fit``/``partial_fit`` call makes ``epochs``
passes over the data it is given; ``partial_fit`` continues from the current weights and
optimizer moments, and grows the output layer when labels appear that it has not seen.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fedsim.classifiers.base import Classifier, check_choice, check_int, check_number
from fedsim.seeding import derive_seed

NORMALIZE = ("l2", "none")
PREDICT_CHUNK = 16384


class _Head(nn.Module):
    def __init__(self, hidden: nn.Linear | None, out: nn.Linear, dropout: float) -> None:
        super().__init__()
        self.hidden, self.out, self.dropout = hidden, out, dropout

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.hidden is not None:
            x = torch.relu(self.hidden(x))
            if self.training and self.dropout > 0:  # dropout from our own generator, not the global one
                keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.dropout
                x = x * keep / (1.0 - self.dropout)
        return self.out(x)


class FCClassifier(Classifier):
    """Linear or one-hidden-layer classifier.

    ``normalize="l2"`` rescales every input to ``x / |x| * sqrt(d)`` (unit RMS per feature), so
    ``lr`` suits embeddings of any scale; ``"none"`` feeds them as they are.  ``seed`` fixes
    the initialisation, the shuffling and the dropout masks.
    """

    def __init__(
        self,
        hidden: int = 0,
        dropout: float = 0.0,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        normalize: str = "l2",
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(device)
        self.hidden = check_int("hidden", hidden, 0)
        self.dropout = check_number("dropout", dropout, 0.0, 1.0)
        if self.dropout == 1.0 or (self.dropout > 0 and self.hidden == 0):
            raise ValueError(f"dropout must be in [0, 1) and needs hidden > 0, "
                             f"got dropout={dropout!r}, hidden={hidden!r}")
        self.epochs = check_int("epochs", epochs, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.lr = check_number("lr", lr, 0.0, low_open=True)
        self.weight_decay = check_number("weight_decay", weight_decay, 0.0)
        self.normalize = check_choice("normalize", normalize, NORMALIZE)
        self.seed = check_int("seed", seed, 0)

    # ------------------------------------------------------------------ building
    def _generator(self, purpose: str, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(derive_seed(self.seed, "classifier", "fc", purpose))

    def _linear(self, n_in: int, n_out: int) -> nn.Linear:
        """nn.Linear's default init, U(+-1/sqrt(n_in)), drawn from our generator (global RNG untouched)."""
        layer = torch.nn.utils.skip_init(nn.Linear, n_in, n_out, device=self._torch_device())
        bound = 1.0 / math.sqrt(n_in)
        with torch.no_grad():
            for p in (layer.weight, layer.bias):
                p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=self.init_gen_))
        return layer

    def _build(self, n_in: int, n_out: int) -> None:
        dev = self._torch_device()
        self.init_gen_ = self._generator("init", torch.device("cpu"))
        self.shuffle_gen_ = self._generator("shuffle", torch.device("cpu"))
        self.dropout_gen_ = self._generator("dropout", dev)
        hidden = self._linear(n_in, self.hidden) if self.hidden else None
        self.net_ = _Head(hidden, self._linear(self.hidden or n_in, n_out), self.dropout)
        self.optimizer_ = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.loss_curve_: list[float] = []

    def _grow(self, previous: np.ndarray) -> None:
        """New classes: a wider output layer with the old rows (and their Adam moments) moved
        to their classes' new positions; the new rows get a fresh init and zero moments."""
        rows = self._class_index(previous)
        old = self.net_.out
        new = self._linear(old.in_features, len(self.classes_))
        group = self.optimizer_.param_groups[0]["params"]
        with torch.no_grad():
            for name in ("weight", "bias"):
                p_old, p_new = getattr(old, name), getattr(new, name)
                p_new[rows] = p_old
                moments = self.optimizer_.state.pop(p_old, {})
                for key, value in moments.items():
                    if key != "step":
                        grown = torch.zeros_like(p_new)
                        grown[rows] = value
                        moments[key] = grown
                if moments:
                    self.optimizer_.state[p_new] = moments
                group[next(i for i, p in enumerate(group) if p is p_old)] = p_new
        self.net_.out = new

    # ------------------------------------------------------------------ learning
    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        x = self._tensor(X)
        if self.normalize == "l2":
            x = torch.nn.functional.normalize(x, dim=1) * math.sqrt(x.shape[1])
        return x

    def _learn(self, X: np.ndarray, y: np.ndarray, previous: np.ndarray) -> None:
        if not hasattr(self, "net_"):
            self._build(X.shape[1], len(self.classes_))
        elif len(previous) < len(self.classes_):
            self._grow(previous)
        x, target = self._inputs(X), self._class_index(y)
        loss_fn = nn.CrossEntropyLoss()
        self.net_.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(x), generator=self.shuffle_gen_).to(x.device)
            total = torch.zeros((), device=x.device)
            for batch in order.split(self.batch_size):
                loss = loss_fn(self.net_(x[batch], self.dropout_gen_), target[batch])
                self.optimizer_.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer_.step()
                total += loss.detach() * len(batch)
            self.loss_curve_.append(float(total) / len(x))  # mean training loss of each pass

    # ----------------------------------------------------------------- inference
    def _decision(self, Q: np.ndarray) -> torch.Tensor:
        """Logits."""
        self.net_.eval()
        with torch.inference_mode():
            return torch.cat([self.net_(q) for q in self._inputs(Q).split(PREDICT_CHUNK)])

    def _proba(self, Q: np.ndarray) -> torch.Tensor:
        return torch.softmax(self._decision(Q), dim=1)

    # --------------------------------------------------------------------- state
    def _get_state(self) -> dict[str, np.ndarray]:
        return {key: value.detach().cpu().numpy() for key, value in self.net_.state_dict().items()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """The weights; the optimizer restarts (its moments are not shipped)."""
        has_hidden = "hidden.weight" in state
        if has_hidden != bool(self.hidden) or (has_hidden and state["hidden.weight"].shape[0] != self.hidden):
            raise ValueError(f"state does not match hidden={self.hidden}")
        n_in = state["hidden.weight" if has_hidden else "out.weight"].shape[1]
        self._build(n_in, len(self.classes_))
        self.net_.load_state_dict({k: torch.from_numpy(np.asarray(state[k])) for k in self.net_.state_dict()})
        self.n_features_in_ = n_in
