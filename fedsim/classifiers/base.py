"""Base class of the server classifiers and their parameter checks.

Conventions every classifier follows (scikit-learn's, plus what the federation needs):

* parameters are checked in ``__init__`` (``ValueError`` naming the parameter and what is
  allowed), so a scenario fails before any work;
* everything ``fit``/``partial_fit`` learns or caches ends with an underscore, and ``fit``
  forgets all of it before learning; ``partial_fit`` learns more;
* ``classes_`` is the sorted union of the labels seen so far and orders the columns of
  ``predict_proba``; ``class_count_`` counts the samples seen per class;
* ``get_state`` returns only numeric numpy arrays (they travel in Flower ArrayRecords), and
  ``set_state`` on a fresh instance with the same parameters predicts exactly like the
  original, so clients can score their own queries;
* computation runs in torch on ``device``; inputs and outputs are numpy; randomness only
  comes from generators seeded from ``seed``, never from global RNG state.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from fedsim.device import best_device

DEVICES = ("auto", "cpu", "cuda")


# --- parameter checks ---------------------------------------------------------------------

def check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, low: float, high: float | None = None, low_open: bool = False) -> float:
    """A finite real in [low, high] (or (low, high] with ``low_open``); the error names the interval."""
    where = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if not ok or value < low or (low_open and value == low) or (high is not None and value > high):
        raise ValueError(f"{name} must be a number in {where}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


# --- base class ---------------------------------------------------------------------------

class Classifier:
    """Shared fit/predict/state plumbing; subclasses implement the ``_`` hooks below."""

    #: True when ``get_state`` contains training records (a kNN pool): shipping such a
    #: state to a client hands it every other client's release
    state_holds_records = False

    def __init__(self, device: str = "auto") -> None:
        self.device = check_choice("device", device, DEVICES)

    # -- hooks -----------------------------------------------------------------------------
    def _learn(self, X: np.ndarray, y: np.ndarray, previous: np.ndarray) -> None:
        """Learn from a checked batch; ``classes_``/``class_count_`` already include it and
        ``previous`` holds the classes known before it (so learned rows can be re-aligned)."""
        raise NotImplementedError

    def _proba(self, Q: np.ndarray) -> torch.Tensor:
        """Class probabilities on the device, columns ordered like ``classes_``."""
        raise NotImplementedError

    def _decision(self, Q: np.ndarray) -> torch.Tensor:
        """Scores whose row-wise argmax is the prediction (exact even where probabilities tie)."""
        return self._proba(Q)

    def _get_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore learned attributes, including ``n_features_in_``."""
        raise NotImplementedError

    # -- learning --------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> "Classifier":
        """Forget everything, then learn from (X, y)."""
        self._forget()
        if len(X) == 0:
            raise ValueError(f"{type(self).__name__}.fit needs at least one sample")
        return self.partial_fit(X, y)

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> "Classifier":
        """Learn from one more batch; labels never seen before add classes."""
        X, y = self._check_xy(X, y)
        if len(y) == 0:
            return self
        previous = self.classes_ if self._fitted() else np.empty(0, np.int64)
        classes = np.union1d(previous, y)
        counts = np.zeros(len(classes), np.int64)
        if len(previous):
            counts[np.searchsorted(classes, previous)] = self.class_count_
        counts += np.bincount(np.searchsorted(classes, y), minlength=len(classes))
        self.classes_, self.class_count_, self.n_features_in_ = classes, counts, X.shape[1]
        self._learn(X, y, previous)
        return self

    def _forget(self) -> None:
        for name in [n for n in vars(self) if n.endswith("_")]:
            delattr(self, name)

    # -- inference -------------------------------------------------------------------------
    def predict_proba(self, Q: np.ndarray) -> np.ndarray:
        return self._proba(self._check_q(Q)).float().cpu().numpy()

    def predict(self, Q: np.ndarray) -> np.ndarray:
        Q = self._check_q(Q)
        return self.classes_[self._decision(Q).argmax(1).cpu().numpy()]

    def score(self, Q: np.ndarray, y: np.ndarray) -> float:
        """Accuracy of ``predict(Q)`` against ``y``."""
        return float((self.predict(Q) == np.asarray(y)).mean())

    # -- state -----------------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """What a client needs to predict exactly like this model (numeric arrays only)."""
        self._check_fitted()
        state = {"classes": self.classes_, "class_count": self.class_count_, **self._get_state()}
        return {k: np.ascontiguousarray(v).copy() for k, v in state.items()}

    def set_state(self, state: dict[str, np.ndarray]) -> "Classifier":
        self._forget()
        self.classes_ = np.asarray(state["classes"], np.int64)
        self.class_count_ = np.asarray(state["class_count"], np.int64)
        self._set_state(state)
        return self

    # -- helpers for subclasses ------------------------------------------------------------
    def _torch_device(self) -> torch.device:
        return best_device(self.device)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.require(a, requirements=["C", "W"])).to(self._torch_device())

    def _class_index(self, y: np.ndarray) -> torch.Tensor:
        """Column of each label in ``classes_``, on the device."""
        return self._tensor(np.searchsorted(self.classes_, y))

    def _fitted(self) -> bool:
        return hasattr(self, "classes_")

    def _check_fitted(self) -> None:
        if not self._fitted():
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(X, y) first")

    def _check_x(self, X: np.ndarray) -> np.ndarray:
        X = np.require(X, np.float32, ["C", "W"])  # torch.from_numpy needs writable memory
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D array (n, d), got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("embeddings contain NaN or infinite values")
        if self._fitted() and X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the classifier was fitted with {self.n_features_in_}")
        return X

    def _check_xy(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, y = self._check_x(X), np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"expected X (n, d) and y (n,), got {X.shape} and {y.shape}")
        if y.size and not np.issubdtype(y.dtype, np.integer) and not np.array_equal(y, np.round(y)):
            raise ValueError("labels must be integer class ids")
        return X, y.astype(np.int64)

    def _check_q(self, Q: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self._check_x(Q)

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
