"""Aggregating methods built on clustering: ``kmeans`` and ``density_based`` (DBSCAN).

They change only the training release: released vectors are cluster means (optionally
noised), and ``groups_`` lists the originals behind each released row.  Queries are never
replaced by centroids (the study replaced each test set by its own centroids, which
measured accuracy on a different, denoised and smaller test set); they pass through the
per-record part of the method: unchanged, or with fresh noise of the method's noise type
when ``noise_scale`` > 0.

What they give: a released row is an average of several records, so it does not reveal
any one of them exactly; clusters of a single record are never released as such (a mean
of one record is that record).  What they do not: no formal guarantee; a small cluster's
mean stays close to its members, and an attacker who knows all members but one recovers
the last from the mean and the cluster size.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.sparse import csr_matrix

from fedsim.anonymizers import _ops
from fedsim.anonymizers.base import Anonymizer, check_choice, check_device, check_int, check_number

log = logging.getLogger(__name__)


def group_means(X: np.ndarray, labels: np.ndarray, n_groups: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Float64 mean and member indices of groups 0..n_groups-1, none of them empty
    (labels < 0 are ignored)."""
    if n_groups == 0:
        return np.zeros((0, X.shape[1])), []
    keep = np.flatnonzero(labels >= 0)
    order = keep[np.argsort(labels[keep], kind="stable")]
    counts = np.bincount(labels[keep], minlength=n_groups)
    assert counts.min() > 0, "empty group"
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sums = np.add.reduceat(X[order].astype(np.float64), starts, axis=0)
    members = np.split(order, np.cumsum(counts)[:-1])
    return sums / counts[:, None], members


def majority(y: np.ndarray, members: list[np.ndarray]) -> np.ndarray:
    """Most frequent label of each group (ties: the smallest label)."""
    return np.array([np.bincount(y[m]).argmax() for m in members], dtype=np.int64)


def size_summary(members: list[np.ndarray]) -> dict[str, float]:
    sizes = np.array([len(m) for m in members]) if members else np.zeros(1)
    return {"group_size_min": float(sizes.min()), "group_size_median": float(np.median(sizes)),
            "group_size_max": float(sizes.max())}


class KMeansAnonymizer(Anonymizer):
    """``kmeans``: one released row per cluster, the mean of its members (+ Laplace noise of
    scale ``noise_scale`` per coordinate when set), labelled by ``assign_labels``:
    ``majority`` = most frequent label in the cluster, ``centroid`` = the label of the
    member nearest the (noise-free) mean.  The study's ``centroid`` rounded the mean class
    INDEX, which is meaningless for nominal labels.

    Clustering: torch Lloyd iterations (``n_iter``) from k-means++ seeds drawn on a random
    subsample of at most max(4 n_clusters, 4096) rows (or ``init="random"`` records);
    assignments inside the iterations use bf16 scores where bf16 pays off (CUDA, CPUs with
    AVX512-BF16 or AMX), means and the final assignment are exact fp32.  An empty cluster is re-seeded at
    the farthest point during the iterations; after the last one, each cluster holding a
    single record is dissolved and that record joins its nearest multi-record cluster, so
    the release may hold fewer than ``n_clusters`` rows.  Queries: unchanged, or fresh
    Laplace noise of the same scale when ``noise_scale`` > 0.
    """

    name = "kmeans"

    def __init__(self, n_clusters: int, assign_labels: str = "majority", noise_scale: float | None = None,
                 n_iter: int = 20, init: str = "k-means++", device: str = "auto",
                 seed: int = 0, key: int = 0) -> None:
        super().__init__(seed=seed, key=key)
        self.n_clusters = check_int("n_clusters", n_clusters, low=1)
        self.assign_labels = check_choice("assign_labels", assign_labels, ("majority", "centroid"))
        self.noise_scale = None if noise_scale is None else check_number("noise_scale", noise_scale, low=0)
        self.n_iter = check_int("n_iter", n_iter, low=1)
        self.init = check_choice("init", init, ("k-means++", "random"))
        self.device = check_device(device)

    def check_data(self, n_samples, n_features):
        super().check_data(n_samples, n_features)
        if self.n_clusters > n_samples:
            raise ValueError(f"n_clusters must be in [1, {n_samples}] (the number of records), "
                             f"got {self.n_clusters}")

    @torch.no_grad()
    def _fit(self, X, y):
        dev = _ops.device_for(self.device)
        Xt = _ops.tensor(X, dev)
        rng = self._rng("init")
        k = self.n_clusters
        if self.init == "k-means++":
            seeds = _ops.kmeans_plusplus(Xt, k, rng, max_sample=max(4 * k, 4096))
        else:
            seeds = torch.from_numpy(np.sort(rng.choice(len(X), size=k, replace=False))).to(dev)
        centers, labels, d2, self.n_iter_ = _ops.lloyd(Xt, Xt[seeds], self.n_iter, bf16=_ops.use_bf16(dev))
        self.inertia_ = float(d2.double().sum())
        self.cluster_centers_ = centers.cpu().numpy()
        labels = labels.cpu().numpy()
        counts = np.bincount(labels, minlength=k)
        lonely = np.flatnonzero(counts[labels] == 1)
        if len(lonely):
            shared = np.flatnonzero(counts >= 2)
            if not len(shared):
                raise ValueError(f"kmeans: every one of the {k} clusters holds a single record, so each "
                                 f"centroid would be a record; choose n_clusters <= {len(X) // 2}")
            target, _ = _ops.nearest(Xt[torch.from_numpy(lonely).to(dev)], centers[torch.from_numpy(shared).to(dev)])
            labels[lonely] = shared[target.cpu().numpy()]
        used, self.labels_ = np.unique(labels, return_inverse=True)
        self.n_dissolved_ = int(k - len(used))

    def _release(self, X, y):
        if len(X) != len(self.labels_):
            raise ValueError("kmeans: release(X, y) must get the data given to fit")
        means, members = group_means(X, self.labels_, int(self.labels_.max()) + 1)
        if self.assign_labels == "majority":
            labels = majority(y, members)
        else:
            nearest = [m[np.argmin(((X[m] - c) ** 2).sum(1))] for m, c in zip(members, means)]
            labels = y[np.asarray(nearest, dtype=np.int64)]
        if self.noise_scale:
            means = means + self._rng("release").laplace(0.0, self.noise_scale, size=means.shape)
        self.groups_ = members
        info = {"n_clusters": len(members), "n_dissolved": self.n_dissolved_,
                "noise_scale": float(self.noise_scale or 0.0), **size_summary(members)}
        return means, labels, info

    def queries_in_clear(self) -> bool:
        return not self.noise_scale

    def _transform_queries(self, Q):
        if not self.noise_scale:
            return Q.copy()
        return Q + self._rng("queries").laplace(0.0, self.noise_scale, size=Q.shape).astype(np.float32)


class DensityBased(Anonymizer):
    """``density_based``: DBSCAN (scikit-learn, eps=``max_dist``, ``min_samples``) on a sparse
    radius-neighbour graph built in torch chunks (never an n x n matrix; memory grows with
    the number of pairs within max_dist, capped at ``MAX_PAIRS``).

    Release, one row per kept record, in the original order: a clustered record becomes its
    cluster's mean plus fresh N(0, noise_scale^2) noise, labelled with the cluster's
    majority label (every row of a cluster is the same mean, so no row carries its own
    member's label).  Noise points (in no cluster) are never released unchanged:
    ``noise_policy="drop"`` (default) leaves them out; ``"perturb"`` releases them with
    their own label plus Gaussian noise of scale max(noise_scale, the median
    nearest-neighbour distance in the client's data), i.e. enough to move a point about as
    far as its nearest neighbour.  A cluster of a single record counts as noise.  Queries:
    unchanged, or fresh N(0, noise_scale^2) noise when noise_scale > 0.
    """

    name = "density_based"
    MAX_PAIRS = 50_000_000

    def __init__(self, max_dist: float, min_samples: int = 5, noise_scale: float = 0.0,
                 noise_policy: str = "drop", device: str = "auto", seed: int = 0, key: int = 0) -> None:
        super().__init__(seed=seed, key=key)
        self.max_dist = check_number("max_dist", max_dist, low=0, low_open=True)
        self.min_samples = check_int("min_samples", min_samples, low=2)
        self.noise_scale = check_number("noise_scale", noise_scale, low=0)
        self.noise_policy = check_choice("noise_policy", noise_policy, ("drop", "perturb"))
        self.device = check_device(device)

    def check_data(self, n_samples, n_features):
        super().check_data(n_samples, n_features)
        if self.min_samples > n_samples:
            raise ValueError(f"min_samples must be in [2, {n_samples}] (the number of records), "
                             f"got {self.min_samples}")

    @torch.no_grad()
    def _fit(self, X, y):
        from sklearn.cluster import DBSCAN

        dev = _ops.device_for(self.device)
        data, indices, indptr, nn = _ops.radius_graph(_ops.tensor(X, dev), self.max_dist, self.MAX_PAIRS)
        graph = csr_matrix((data, indices, indptr), shape=(len(X), len(X)))
        labels = DBSCAN(eps=self.max_dist, min_samples=self.min_samples, metric="precomputed").fit(graph).labels_
        labels = np.asarray(labels, dtype=np.int64).copy()
        if (labels >= 0).any():  # a cluster of one record (its neighbours claimed elsewhere) is noise
            sizes = np.bincount(labels[labels >= 0])
            labels[(labels >= 0) & (sizes[np.maximum(labels, 0)] < 2)] = -1
        ids = np.unique(labels[labels >= 0])
        remap = np.full(int(labels.max()) + 2, -1, dtype=np.int64)
        remap[ids] = np.arange(len(ids))
        self.labels_ = remap[labels]  # labels == -1 reads remap[-1] == -1
        finite = nn[np.isfinite(nn)]
        self.nn_distance_median_ = float(np.median(finite)) if finite.size else float(self.max_dist)

    def _release(self, X, y):
        if len(X) != len(self.labels_):
            raise ValueError("density_based: release(X, y) must get the data given to fit")
        n_clusters = int(self.labels_.max()) + 1
        means, members = group_means(X, self.labels_, n_clusters)
        cluster_label = majority(y, members) if n_clusters else np.zeros(0, np.int64)
        rng = self._rng("release")
        clustered = self.labels_ >= 0
        noise_points = np.flatnonzero(~clustered)
        keep = np.arange(len(X)) if self.noise_policy == "perturb" else np.flatnonzero(clustered)
        out = np.empty((len(keep), X.shape[1]), dtype=np.float64)
        labels = np.empty(len(keep), dtype=np.int64)
        lab = self.labels_[keep]
        inc = lab >= 0
        out[inc] = means[lab[inc]]
        labels[inc] = cluster_label[lab[inc]]
        out[~inc] = X[keep[~inc]]
        labels[~inc] = y[keep[~inc]]
        noise = rng.standard_normal(size=out.shape, dtype=np.float32)
        point_scale = max(self.noise_scale, self.nn_distance_median_) or self.max_dist  # 0: duplicates
        out += noise * np.where(inc, self.noise_scale, point_scale)[:, None]
        self.groups_ = [members[c] if c >= 0 else np.array([i]) for i, c in zip(keep, lab)]
        if len(keep) == 0:
            log.warning("density_based: every record is a noise point and noise_policy='drop': empty release")
        info = {"n_clusters": n_clusters, "n_noise": len(noise_points),
                "n_dropped": len(X) - len(keep), "noise_scale": self.noise_scale,
                **size_summary(members)}
        if self.noise_policy == "perturb":
            info["noise_point_scale"] = point_scale
        return out, labels, info

    def queries_in_clear(self) -> bool:
        return not self.noise_scale

    def _transform_queries(self, Q):
        if not self.noise_scale:
            return Q.copy()
        return Q + self.noise_scale * self._rng("queries").standard_normal(size=Q.shape, dtype=np.float32)
