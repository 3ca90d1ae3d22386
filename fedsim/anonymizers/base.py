"""Base class of all anonymizers, parameter checks, and the identity method ``none``.

Conventions every method follows:

* parameters are checked in ``__init__`` (``ValueError`` naming the parameter and the
  allowed range); checks that need the data's shape live in ``check_data`` so the
  federation can run them before any work, and ``fit`` calls it again;
* ``seed`` is the client's private randomness (noise), ``key`` the federation's shared
  secret (keyed transforms, identical on every client);
* the same parameters, seed, key and data give the same output: randomness only comes from
  generators derived here, never from global RNG state. Each call of ``release`` or
  ``transform_queries`` restarts its own stream, so repeating a call repeats its noise
  (averaging repeated releases gains nothing);
* ``groups_`` says which originals stand behind each released row: ``None`` when released
  row i comes from original row i (per-record methods), else one index array per released
  row (empty for synthetic rows); ``release_info_`` holds numeric facts about the release.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from fedsim.seeding import derive_seed


def check_xy(X: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (n, d), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("embeddings contain NaN or infinite values")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"labels must have shape ({X.shape[0]},), got {y.shape}")
        if y.size and not np.issubdtype(y.dtype, np.integer):
            if not np.array_equal(y, np.round(y)):
                raise ValueError("labels must be integer class indices")
        y = y.astype(np.int64)
    return X, y


# --- parameter checks ---------------------------------------------------------------------

def _interval(low, high, low_open, high_open) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in the interval; the error names ``name`` and the interval."""
    where = _interval(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number in {where}, got {value!r}")
    v = float(value)
    if (low is not None and (v < low or (low_open and v == low))) or \
            (high is not None and (v > high or (high_open and v == high))):
        raise ValueError(f"{name} must be in {where}, got {value!r}")
    return v


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    where = f"an integer in {_interval(low, high, False, False)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be {where}, got {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be {where}, got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def check_device(value: Any) -> str:
    if not isinstance(value, str) or not (value in ("auto", "cpu", "cuda") or value.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    return value


# --- base class ---------------------------------------------------------------------------

class Anonymizer:
    """Parameters in ``__init__`` (validated there), learned state with a trailing underscore."""

    #: registry name; also names the random streams
    name = "anonymizer"
    #: True when the release reveals the original vectors (only ``none``).
    reveals_originals = False
    #: True when the method needs statistics from every client (``combine_shared_state``).
    needs_shared_state = False
    #: which originals stand behind each released row (None: row i comes from row i)
    groups_: list[np.ndarray] | None = None
    #: what undoes the transform: "key" (the federation key: an insider, never the server),
    #: "public" (state the server itself computed, e.g. the pca basis), or None
    inverted_with: str | None = None

    def __init__(self, seed: int = 0, key: int = 0) -> None:
        self.seed = check_int("seed", seed)
        self.key = check_int("key", key)

    # -- checks ----------------------------------------------------------------------------
    def check_data(self, n_samples: int, n_features: int) -> None:
        """Data-dependent parameter checks, without the data (the federation calls this early)."""
        if n_samples < 1:
            raise ValueError(f"{self.name}: needs at least 1 record, got {n_samples}")
        if n_features < 1:
            raise ValueError(f"{self.name}: embeddings need at least 1 feature, got {n_features}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise RuntimeError(f"{self.name}: call fit(X, y) before release or transform_queries")

    def _check_input(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = check_xy(X)[0]
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"{self.name}: fitted on {self.n_features_in_} features, got {X.shape[1]}")
        return X

    # -- randomness ------------------------------------------------------------------------
    def _seed_for(self, stream: str) -> int:
        """Private per-client stream (noise); never shared."""
        return derive_seed(self.seed, "anonymizer", self.name, stream)

    def _rng(self, stream: str) -> np.random.Generator:
        return np.random.default_rng(self._seed_for(stream))

    def _key_rng(self, *purpose: str | int) -> np.random.Generator:
        """Federation-wide stream from the shared key: the same numbers on every client."""
        return np.random.default_rng(derive_seed(self.key, "federation-key", self.name, *purpose))

    # -- the contract ----------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "Anonymizer":
        X, y = check_xy(X, y)
        self.check_data(*X.shape)
        self.n_features_in_ = X.shape[1]
        self._fit(X, y)
        return self

    def release(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What is shared for training: (embeddings, labels)."""
        X = self._check_input(X)
        _, y = check_xy(X, y)
        if y is None:
            raise ValueError(f"{self.name}: release needs the labels y")
        X_rel, y_rel, info = self._release(X, y)
        X_rel = np.ascontiguousarray(X_rel, dtype=np.float32)
        y_rel = np.ascontiguousarray(y_rel, dtype=np.int64)
        self.release_info_ = {"n_released": int(len(y_rel)), **info}
        return X_rel, y_rel

    def transform_queries(self, Q: np.ndarray) -> np.ndarray:
        """How this client's query embeddings are shared for scoring."""
        Q = self._check_input(Q)
        return np.ascontiguousarray(self._transform_queries(Q), dtype=np.float32)

    def queries_in_clear(self) -> bool:
        """True when ``transform_queries`` returns the queries unchanged: evaluated on the
        server, such a method shows the server this client's original query embeddings."""
        return False

    def noise_multiplier(self) -> float | None:
        """Noise standard deviation over L2 sensitivity when each released vector is a
        Gaussian mechanism with a formal guarantee (the privacy accountant composes it);
        None for methods without one."""
        return None

    def max_release_rows(self, n_samples: int) -> int:
        """The most rows a release of ``n_samples`` records may have (the server checks it)."""
        return n_samples

    def invert(self, X_rel: np.ndarray) -> np.ndarray:
        """Map a release back to the embedding space with what ``inverted_with`` names
        (exact for a permutation, least squares for projections)."""
        raise ValueError(f"{self.name} cannot be inverted")

    # -- hooks for subclasses --------------------------------------------------------------
    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        pass

    def _release(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        raise NotImplementedError

    def _transform_queries(self, Q: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- federated shared state (only methods with needs_shared_state) ---------------------
    def shared_statistics(self, X: np.ndarray) -> dict[str, np.ndarray]:
        raise ValueError(f"{self.name} needs no statistics from the clients")

    @classmethod
    def combine_shared_state(cls, stats: list[dict[str, np.ndarray]], **params: Any) -> dict[str, np.ndarray]:
        raise ValueError(f"{cls.name} has no shared state")

    def set_shared_state(self, state: dict[str, np.ndarray]) -> "Anonymizer":
        raise ValueError(f"{self.name} has no shared state")

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.get_params().items() if k not in ("seed", "key")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


class Identity(Anonymizer):
    """``none``: shares the embeddings unchanged; the utility reference for every method."""

    name = "none"
    reveals_originals = True

    def queries_in_clear(self) -> bool:
        return True

    def _release(self, X, y):
        return X.copy(), y.copy(), {}

    def _transform_queries(self, Q):
        return Q.copy()
