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
    """``density_based``: DBSCAN (scikit-learn, eps = the radius, ``min_samples``) on a sparse
    radius-neighbour graph built in torch chunks (never an n x n matrix; memory grows with
    the number of pairs within the radius, capped at ``MAX_PAIRS``).

    The radius: ``max_dist = "auto"`` (default) adapts it to the client's own data, the way
    DBSCAN users read eps off a k-distance plot: it is the ``radius_quantile`` quantile of
    every record's distance to its ``radius_k``-th nearest other record (``radius_k``
    defaults to ``min_samples - 1``, so a share ``radius_quantile`` of the records are core
    points, whatever the number of records or the scale of the embeddings; above
    ``KDIST_SAMPLE`` records the quantile is taken over a seeded sample of that many
    records, each against all records).  The default 0.5 reproduces the absolute radius
    14 on the 1,250-record clients and the embeddings it was chosen for (it made 52-58% of
    those records core points); an absolute radius does not carry over to another
    extractor's scale or another data size (REPRODUCTION.md).  A number ``max_dist`` is an absolute radius, as
    before, and then ``radius_quantile``/``radius_k`` must not be set.  ``radius_`` holds
    the radius used.

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
    #: records whose k-distances estimate the adaptive radius's quantile (all, below this)
    KDIST_SAMPLE = 8192
    DEFAULT_RADIUS_QUANTILE = 0.5

    def __init__(self, max_dist: float | str = "auto", min_samples: int = 5, noise_scale: float = 0.0,
                 noise_policy: str = "drop", radius_quantile: float | None = None, radius_k: int | None = None,
                 device: str = "auto", seed: int = 0, key: int = 0) -> None:
        super().__init__(seed=seed, key=key)
        if isinstance(max_dist, str):
            if max_dist != "auto":
                raise ValueError(f"max_dist must be 'auto' (a radius adapted to each client's data) or a "
                                 f"number in (0, inf) (an absolute radius), got {max_dist!r}")
            self.max_dist = max_dist
        else:
            try:
                self.max_dist = check_number("max_dist", max_dist, low=0, low_open=True)
            except ValueError:
                raise ValueError(f"max_dist must be 'auto' (a radius adapted to each client's data) or a "
                                 f"number in (0, inf) (an absolute radius), got {max_dist!r}") from None
            for param, value in (("radius_quantile", radius_quantile), ("radius_k", radius_k)):
                if value is not None:
                    raise ValueError(f"{param} applies only with max_dist = 'auto' (the adaptive radius); "
                                     f"max_dist = {max_dist!r} is an absolute radius: leave {param} unset")
        self.min_samples = check_int("min_samples", min_samples, low=2)
        self.radius_quantile = None if radius_quantile is None else \
            check_number("radius_quantile", radius_quantile, low=0, high=1, low_open=True)
        self.radius_k = None if radius_k is None else check_int("radius_k", radius_k, low=1)
        self.noise_scale = check_number("noise_scale", noise_scale, low=0)
        self.noise_policy = check_choice("noise_policy", noise_policy, ("drop", "perturb"))
        self.device = check_device(device)

    def check_data(self, n_samples, n_features):
        super().check_data(n_samples, n_features)
        if self.min_samples > n_samples:
            raise ValueError(f"min_samples must be in [2, {n_samples}] (the number of records), "
                             f"got {self.min_samples}")
        if self.max_dist == "auto" and self.radius_k is not None and self.radius_k > n_samples - 1:
            raise ValueError(f"radius_k must be in [1, {n_samples - 1}] (the number of other records), "
                             f"got {self.radius_k}")

    def _k(self) -> int:
        return self.min_samples - 1 if self.radius_k is None else self.radius_k

    def _quantile(self) -> float:
        return self.DEFAULT_RADIUS_QUANTILE if self.radius_quantile is None else self.radius_quantile

    @torch.no_grad()
    def k_distances(self, Xt: torch.Tensor) -> torch.Tensor:
        """Distance of (a seeded sample of at most ``KDIST_SAMPLE``) records to their
        ``radius_k``-th nearest other record, in chunks (no n x n matrix): candidates from
        the fp32 product, distances re-computed from the differences (exact duplicates are
        at distance 0, not at the product's rounding error)."""
        n, k = Xt.shape[0], self._k()
        rows = torch.arange(n, device=Xt.device)
        if n > self.KDIST_SAMPLE:
            pick = np.sort(self._rng("radius").choice(n, size=self.KDIST_SAMPLE, replace=False))
            rows = torch.from_numpy(pick).to(Xt.device)
        sq = (Xt * Xt).sum(1)
        n_cand = min(k + 8, n - 1)
        out = []
        for r in rows.split(_ops.rows_per_chunk(n)):
            d2 = torch.addmm(sq[None, :], Xt[r], Xt.T, alpha=-2.0).add_(sq[r, None])
            d2[torch.arange(len(r), device=Xt.device), r] = float("inf")  # not itself
            cand = d2.topk(n_cand, dim=1, largest=False).indices
            diff = Xt[cand] - Xt[r].unsqueeze(1)
            out.append(diff.mul_(diff).sum(2).kthvalue(k, dim=1).values)
        return torch.cat(out).sqrt_()

    def _radius(self, Xt: torch.Tensor) -> float:
        if self.max_dist != "auto":
            return float(self.max_dist)
        kd = self.k_distances(Xt).double().cpu().numpy()
        radius = float(np.quantile(kd, self._quantile()))
        if radius <= 0:  # duplicates: a radius just above the radius graph's fp32 rounding of distance 0
            radius = max(float(np.sqrt(2.0**-20 * Xt.shape[1] * float((Xt * Xt).sum(1).max()))), 1e-12)
        return radius

    @torch.no_grad()
    def _fit(self, X, y):
        from sklearn.cluster import DBSCAN

        dev = _ops.device_for(self.device)
        Xt = _ops.tensor(X, dev)
        self.radius_ = self._radius(Xt)
        data, indices, indptr, nn = _ops.radius_graph(Xt, self.radius_, self.MAX_PAIRS)
        graph = csr_matrix((data, indices, indptr), shape=(len(X), len(X)))
        labels = DBSCAN(eps=self.radius_, min_samples=self.min_samples, metric="precomputed").fit(graph).labels_
        labels = np.asarray(labels, dtype=np.int64).copy()
        if (labels >= 0).any():  # a cluster of one record (its neighbours claimed elsewhere) is noise
            sizes = np.bincount(labels[labels >= 0])
            labels[(labels >= 0) & (sizes[np.maximum(labels, 0)] < 2)] = -1
        ids = np.unique(labels[labels >= 0])
        remap = np.full(int(labels.max()) + 2, -1, dtype=np.int64)
        remap[ids] = np.arange(len(ids))
        self.labels_ = remap[labels]  # labels == -1 reads remap[-1] == -1
        finite = nn[np.isfinite(nn)]
        self.nn_distance_median_ = float(np.median(finite)) if finite.size else self.radius_

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
        point_scale = max(self.noise_scale, self.nn_distance_median_) or self.radius_  # 0: duplicates
        out += noise * np.where(inc, self.noise_scale, point_scale)[:, None]
        self.groups_ = [members[c] if c >= 0 else np.array([i]) for i, c in zip(keep, lab)]
        if len(keep) == 0:
            log.warning("density_based: every record is a noise point and noise_policy='drop': empty release")
        info = {"n_clusters": n_clusters, "n_noise": len(noise_points),
                "n_dropped": len(X) - len(keep), "noise_scale": self.noise_scale, "radius": self.radius_,
                "n_clustered": int(clustered.sum()), **size_summary(members)}
        if self.max_dist == "auto":
            info["radius_quantile"] = self._quantile()
        if self.noise_policy == "perturb":
            info["noise_point_scale"] = point_scale
        return out, labels, info

    def queries_in_clear(self) -> bool:
        return not self.noise_scale

    def _transform_queries(self, Q):
        if not self.noise_scale:
            return Q.copy()
        return Q + self.noise_scale * self._rng("queries").standard_normal(size=Q.shape, dtype=np.float32)
