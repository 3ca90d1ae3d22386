"""k-nearest-neighbour classifier: a (possibly bounded) memory of samples and a neighbour search.

Search paths (``search.PATHS``).  Each finds the best ``k + prefilter_margin`` candidates
fast and re-ranks them by exact fp32 distances computed from the differences, so all give
the neighbours of exact arithmetic (scikit-learn's):

* ``torch_fp32`` -- chunked fp32 matrix product + top-k on ``device``; never builds the full
  query x database matrix (chunks stay under ``max_chunk_bytes``).
* ``torch_bf16`` -- the same product in bfloat16 (centred, distance terms as extra columns).
* ``faiss`` -- faiss's flat indexes on the CPU (optional ``faiss-cpu``).

``backend="auto"`` with ``precision="auto"`` takes the fastest of them on the machine it
runs on (``search.choose_path``): on a CPU, a one-off timed calibration of the candidates
(bf16 only where the CPU has bf16 units: AMX or AVX512-BF16), kept per process and on disk;
on CUDA, the bf16 prefilter above ``search.BF16_MIN_ROWS`` rows.  ``backend="torch"``
chooses between the torch paths, ``precision="fp32"`` between the fp32 ones (torch, faiss),
``precision="bf16"`` and ``backend="faiss"`` name one path.  ``search_path_`` says which
path the current database uses.

``memory_size`` bounds the memory with a class-balanced reservoir (``reservoir.py``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from fedsim.classifiers import reservoir
from fedsim.classifiers.base import Classifier, check_choice, check_int
from fedsim.classifiers.search import FaissSearch, TorchSearch, build, candidate_paths, choose_path, import_faiss
from fedsim.seeding import derive_seed

log = logging.getLogger(__name__)

METRICS = ("cosine", "euclidean")
WEIGHTS = ("uniform", "distance")
PRECISIONS = ("auto", "fp32", "bf16")
BACKENDS = ("auto", "torch", "faiss")


class KNNClassifier(Classifier):
    """Majority (or inverse-distance) vote of the ``k`` nearest remembered samples.

    With fewer than ``k`` remembered samples (a small federated release) the vote is over all
    of them, with a logged warning naming ``k`` and the count.

    ``prefilter_margin`` is how many extra candidates the exact re-rank sees (default
    ``max(16, 2k)`` after the bf16 product, 4 after an fp32 one: ``search.margin_for``);
    ``seed`` drives the reservoir's evictions.
    """

    state_holds_records = True

    def __init__(
        self,
        k: int = 5,
        metric: str = "cosine",
        weights: str = "uniform",
        memory_size: int | None = None,
        precision: str = "auto",
        backend: str = "auto",
        prefilter_margin: int | None = None,
        max_chunk_bytes: int = 256 * 2**20,
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(device)
        self.k = check_int("k", k, 1)
        self.metric = check_choice("metric", metric, METRICS)
        self.weights = check_choice("weights", weights, WEIGHTS)
        self.memory_size = None if memory_size is None else check_int("memory_size", memory_size, 1)
        self.precision = check_choice("precision", precision, PRECISIONS)
        self.backend = check_choice("backend", backend, BACKENDS)
        if backend == "faiss":
            if precision == "bf16":
                raise ValueError("precision 'bf16' needs backend 'torch' or 'auto' (faiss searches in fp32)")
            import_faiss()  # fail now, with the install hint, rather than at the first prediction
        self.prefilter_margin = None if prefilter_margin is None else check_int("prefilter_margin", prefilter_margin, 0)
        self.max_chunk_bytes = check_int("max_chunk_bytes", max_chunk_bytes, 1)
        self.seed = check_int("seed", seed, 0)

    # ------------------------------------------------------------------ learning
    def _learn(self, X: np.ndarray, y: np.ndarray, previous: np.ndarray) -> None:
        """Remember the batch (kNN learns by remembering), within ``memory_size``."""
        Xt, yt = self._prepare(self._tensor(X)), self._tensor(y)
        if not hasattr(self, "X_"):
            self.X_, self.y_ = Xt[:0], yt[:0]
        if self.memory_size is None:
            self.X_, self.y_ = torch.cat([self.X_, Xt]), torch.cat([self.y_, yt])
        else:
            if not hasattr(self, "rng_"):
                self.rng_ = np.random.default_rng(derive_seed(self.seed, "classifier", "knn", "reservoir"))
            old, new = reservoir.select(self.y_.cpu().numpy(), y, self.classes_, self.class_count_,
                                        self.memory_size, self.rng_)
            old_t, new_t = self._tensor(old), self._tensor(new)
            self.X_ = torch.cat([self.X_[old_t], Xt[new_t]])
            self.y_ = torch.cat([self.y_[old_t], yt[new_t]])
        for name in ("index_", "search_path_", "search_choice_"):  # the database changed: choose and build again
            self.__dict__.pop(name, None)

    def _prepare(self, X: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(X, dim=1) if self.metric == "cosine" else X

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"X": self.X_.cpu().numpy(), "y": self.y_.cpu().numpy()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.X_ = self._tensor(np.asarray(state["X"], np.float32))  # already normalised for cosine
        self.y_ = self._tensor(np.asarray(state["y"], np.int64))
        self.n_features_in_ = self.X_.shape[1]

    # ----------------------------------------------------------------- inference
    def _index(self) -> TorchSearch | FaissSearch:
        if not hasattr(self, "index_"):
            if self.k > len(self.X_):  # a small release: vote over all of it rather than fail
                log.warning("knn: k = %d is above the %d records it holds; voting over all %d", self.k,
                            len(self.X_), len(self.X_))
            margin = self.prefilter_margin
            paths = candidate_paths(self.X_.device, len(self.X_), self.k, margin, backend=self.backend,
                                    precision=self.precision)
            self.search_path_, self.search_choice_ = choose_path(paths, self.X_, self.metric, self.k, margin,
                                                                 self.max_chunk_bytes)
            self.index_ = build(self.search_path_, self.X_, self.metric, self.k, margin, self.max_chunk_bytes)
        return self.index_

    def _kneighbors_t(self, Q: np.ndarray, n_neighbors: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        Qt = self._prepare(self._tensor(Q))
        return self._index().search(Qt, n_neighbors or self.k)

    def kneighbors(self, Q: np.ndarray, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances (ascending) and memory indices of the nearest neighbours, like scikit-learn."""
        n_neighbors = None if n_neighbors is None else check_int("n_neighbors", n_neighbors, 1)
        d, i = self._kneighbors_t(self._check_q(Q), n_neighbors)
        return d.cpu().numpy(), i.cpu().numpy()

    def _proba(self, Q: np.ndarray) -> torch.Tensor:
        dist, idx = self._kneighbors_t(Q, None)
        if self.weights == "uniform":
            w = torch.ones_like(dist)
        else:  # exact matches take all the weight, like scikit-learn
            exact = dist <= 0
            w = torch.where(exact.any(1, keepdim=True), exact.float(), 1.0 / dist.clamp_min(1e-12))
        col = torch.searchsorted(self._tensor(self.classes_), self.y_[idx])
        votes = torch.zeros(len(idx), len(self.classes_), device=idx.device)
        votes.scatter_add_(1, col, w)
        return votes / votes.sum(1, keepdim=True)
