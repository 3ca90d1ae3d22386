"""The attacker's maps between released space and original space, fitted on aux pairs.

Given the known pairs (released r_a, target t_a) — the target being the original, or the
mean of the originals behind an aggregated row — the attacker tries these maps A -> B
(fitted on pairs (a, b)):

* ``identity``     f(a) = a (only when d' == d): the release is used as is;
* ``procrustes``   f(a) = s (a − μ_a) W + μ_b, W orthogonal = U Vᵀ from the SVD
  U Σ Vᵀ = (A − μ_a)ᵀ (B − μ_b), s = tr Σ / |A − μ_a|²_F: undoes rotations,
  reflections, permutations and global scaling (reverse, when d' == d); when d' != d
  the same formula gives the semi-orthogonal W (d × d', orthonormal columns) of an
  orthogonal projection (forward only);
* ``columns``      each column i of A is matched to one column c(i) of B by the Hungarian
  algorithm (``scipy.optimize.linear_sum_assignment``) on |corr(a_i, b_c)| over the aux
  pairs, then f(a)_{c(i)} = μ_b,c(i) + β_i (a_i − μ_a,i) by least squares (handles
  permutations, sign flips and per-column scaling with far fewer pairs than d);
  unmatched columns of B get their aux mean;
* ``ridge``        f(a) = (a − μ_a) W_α + μ_b, W_α the ridge solution on the centred aux
  pairs, α from a grid (relative to the largest squared singular value of A − μ_a) chosen
  by closed-form leave-one-out error e_i = (b_i − f(a_i)) / (1 − h_ii), hat diagonal
  h_ii = 1/n + Σ_k U_ik² σ_k² / (σ_k² + α). Works for any d' (PCA, random projections)
  and is the minimum-error *linear* map;
* ``lstsq``        f(a) = (a − μ_a) W + μ_b, W = (A − μ_a)⁺ (B − μ_b), the minimum-norm
  least-squares solution (forward, when d' != d): with fewer pairs than dimensions it
  is exact on the span of the pairs, where ridge's leave-one-out α, estimated from a
  handful of pairs, often shrinks too much.

``fit_attacker`` also takes pair-free views (``unpaired``; ``attacks``: likelihood space of
a known noise mechanism, quantile column matching, the release's own subspace, self-PCA),
fitted beforehand on the release and a population; they are validated like the others.

Each map is used in two directions (``View``): ``reverse`` (released -> original; compare
in original space; the only direction that yields reconstructions) and ``forward``
(original -> released; compare in release space). Forward matters for deterministic
dimension reduction: an attacker who knows the originals projects them itself and matches
exactly, while a reverse reconstruction loses the discarded directions.

Selection (``fit_attacker``), on the attacker's own data only: the aux pairs are split in
two folds; each view is fitted on one fold and scored on the other (and vice versa) by
held-out re-identification (fraction of held-out aux rows whose nearest original, in the
view's space, is one of their sources), squared error to the targets (reverse views) and
membership-inference validation AUC (``membership``). Re-identification uses the view with
the highest held-out rate (ties: lower error, then simpler view), inversion the reverse
view with the lowest error, membership the view and score with the highest validation
AUC; all are refitted on all aux pairs. Each fold scores at most ``VALIDATION_ROWS`` rows.
With fewer than 4 aux pairs the views are fitted and scored on all of them (no hold-out);
with none, only ``identity`` (when d' == d) and the pair-free views are available, and
nothing can be validated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from fedsim.privacy.matching import link_success
from fedsim.privacy.pairs import Pairs

VALIDATION_ROWS = 500
RIDGE_GRID = (1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def svd(A: np.ndarray, full_matrices: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD in torch, float64, on the CPU with ONE thread. The matrices are small (at most
    aux rows x d); multi-threaded LAPACK (numpy's OpenBLAS or torch's) on a machine whose
    cores are busy was measured 100-400x slower (2 s instead of 10 ms for 256 x 256)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        U, S, Vt = torch.linalg.svd(torch.from_numpy(np.ascontiguousarray(A, dtype=np.float64)),
                                    full_matrices=full_matrices)
    finally:
        torch.set_num_threads(before)
    return U.numpy(), S.numpy(), Vt.numpy()


class IdentityMap:
    name = "identity"

    def fit(self, R: np.ndarray, T: np.ndarray) -> "IdentityMap":
        return self

    def transform(self, R: np.ndarray) -> np.ndarray:
        return np.asarray(R, dtype=np.float64)


class ProcrustesMap:
    name = "procrustes"

    def fit(self, R: np.ndarray, T: np.ndarray) -> "ProcrustesMap":
        self.mu_r, self.mu_t = R.mean(0), T.mean(0)
        Rc, Tc = R - self.mu_r, T - self.mu_t
        U, S, Vt = svd(Rc.T @ Tc)
        self.W = U @ Vt
        norm = float((Rc * Rc).sum())
        self.scale = float(S.sum()) / norm if norm > 0 else 1.0
        return self

    def transform(self, R: np.ndarray) -> np.ndarray:
        return self.scale * (np.asarray(R, dtype=np.float64) - self.mu_r) @ self.W + self.mu_t


class ColumnMap:
    name = "columns"

    def fit(self, R: np.ndarray, T: np.ndarray) -> "ColumnMap":
        self.mu_r, self.mu_t = R.mean(0), T.mean(0)
        Rc, Tc = R - self.mu_r, T - self.mu_t
        sr, st = np.sqrt((Rc * Rc).sum(0)), np.sqrt((Tc * Tc).sum(0))
        cov = Rc.T @ Tc
        corr = cov / np.maximum(np.outer(sr, st), 1e-300)
        self.src, self.dst = linear_sum_assignment(-np.abs(corr))
        var = sr[self.src] ** 2
        self.slope = np.where(var > 0, cov[self.src, self.dst] / np.maximum(var, 1e-300), 0.0)
        return self

    def transform(self, R: np.ndarray) -> np.ndarray:
        R = np.asarray(R, dtype=np.float64)
        out = np.repeat(self.mu_t[None, :], R.shape[0], axis=0)
        out[:, self.dst] += (R[:, self.src] - self.mu_r[self.src]) * self.slope
        return out


class LeastSquaresMap:
    name = "lstsq"

    def fit(self, R: np.ndarray, T: np.ndarray) -> "LeastSquaresMap":
        self.mu_r, self.mu_t = R.mean(0), T.mean(0)
        U, S, Vt = svd(R - self.mu_r)
        keep = S > S[0] * 1e-10 if S.size and S[0] > 0 else np.zeros(S.shape, bool)
        self.B = Vt[keep].T @ ((U[:, keep].T @ (T - self.mu_t)) / S[keep][:, None])
        return self

    def transform(self, R: np.ndarray) -> np.ndarray:
        return (np.asarray(R, dtype=np.float64) - self.mu_r) @ self.B + self.mu_t


class RidgeMap:
    name = "ridge"

    def fit(self, R: np.ndarray, T: np.ndarray) -> "RidgeMap":
        n = R.shape[0]
        self.mu_r, self.mu_t = R.mean(0), T.mean(0)
        Rc, Tc = R - self.mu_r, T - self.mu_t
        U, S, Vt = svd(Rc)
        keep = S > S[0] * 1e-10 if S.size and S[0] > 0 else np.zeros(S.shape, bool)
        U, S, Vt = U[:, keep], S[keep], Vt[keep]
        if S.size == 0:
            self.alpha, self.B = 0.0, np.zeros((R.shape[1], T.shape[1]))
            return self
        UtT = U.T @ Tc
        alphas = [g * S[0] ** 2 for g in RIDGE_GRID]
        if n < 3:
            self.alpha = alphas[len(alphas) // 2]
        else:
            errors = []
            for a in alphas:
                f = S**2 / (S**2 + a)
                h = 1.0 / n + (U * U) @ f
                resid = Tc - U @ (f[:, None] * UtT)
                errors.append(float(((resid / np.maximum(1.0 - h, 1e-12)[:, None]) ** 2).mean()))
            self.alpha = alphas[int(np.argmin(errors))]
        self.B = Vt.T @ ((S / (S**2 + self.alpha))[:, None] * UtT)
        return self

    def transform(self, R: np.ndarray) -> np.ndarray:
        return (np.asarray(R, dtype=np.float64) - self.mu_r) @ self.B + self.mu_t


@dataclass
class View:
    """Where the attacker compares released rows with originals.

    ``reverse``: released rows are mapped back into original space (f fitted on aux pairs
    released -> original) and compared with the originals there. ``forward``: the
    originals are mapped into release space (g fitted original -> released) and compared
    with the released rows there; this is the natural direction for deterministic
    dimension-reducing transforms (a known-plaintext attacker can project every original
    itself), where a reverse reconstruction loses the discarded directions.
    """

    direction: str  # "reverse" | "forward"
    map: object
    #: nearest-neighbour metric and assignment cost in this view (``geometry``)
    metric = "l2"
    cost = "l2sq"

    @property
    def name(self) -> str:
        return self.map.name if isinstance(self.map, IdentityMap) else f"{self.direction}-{self.map.name}"

    def fit(self, R: np.ndarray, T: np.ndarray) -> "View":
        if self.direction == "reverse":
            self.map.fit(R, T)
        else:
            self.map.fit(T, R)
        return self

    def release_side(self, R: np.ndarray) -> np.ndarray:
        """Released rows in the comparison space."""
        return self.map.transform(R) if self.direction == "reverse" else np.asarray(R, dtype=np.float64)

    def original_side(self, A: np.ndarray) -> np.ndarray:
        """Original-space rows (originals, candidates) in the comparison space."""
        return np.asarray(A, dtype=np.float64) if self.direction == "reverse" else self.map.transform(A)


def candidate_views(d_rel: int, d: int, n_aux: int) -> list[View]:
    """Simplest first (ties in the selection keep the earlier view)."""
    out = [View("reverse", IdentityMap())] if d_rel == d else []
    for direction in ("reverse", "forward"):
        # with d' == d forward Procrustes would be the inverse of the reverse one; with
        # d' != d only the forward one is an orthogonal projection
        if n_aux >= 2 and (direction == "reverse") == (d_rel == d):
            out.append(View(direction, ProcrustesMap()))
        if n_aux >= 2:
            out.append(View(direction, ColumnMap()))
        if n_aux >= 1:
            out.append(View(direction, RidgeMap()))
        if n_aux >= 2 and d_rel != d and direction == "forward":
            out.append(View(direction, LeastSquaresMap()))
    return out


@dataclass
class Attacker:
    views: list[View]  # every candidate, refitted on all aux pairs
    validation: dict[str, dict[str, float]]  # view name -> score name -> held-out value

    def best(self, key: str, tie: str | None = None, reverse_only: bool = False) -> View | None:
        """The view with the highest ``validation[key]`` (ties: lowest ``tie``, then first)."""
        views = [v for v in self.views if v.direction == "reverse"] if reverse_only else self.views
        if not views:
            return None
        def rank(v: View) -> tuple[float, float]:
            score = self.validation[v.name].get(key, -np.inf)
            second = self.validation[v.name].get(tie, np.inf) if tie else 0.0
            return (-score, second)
        return sorted(views, key=rank)[0]

    @property
    def reid_view(self) -> View | None:
        return self.best("reid", tie="mse")

    @property
    def inversion_view(self) -> View | None:
        return self.best("neg_mse", reverse_only=True)


def fit_attacker(X: np.ndarray, X_rel: np.ndarray, pairs: Pairs, aux: np.ndarray,
                 rng: np.random.Generator, device: torch.device,
                 extra: Callable[[View, np.ndarray], dict[str, float]] | None = None,
                 unpaired: Sequence = ()) -> Attacker:
    """Cross-fit every candidate view on the aux pairs and score it on held-out aux rows.

    Scores per view: ``reid`` (held-out re-identification rate), ``mse`` and ``neg_mse``
    (reverse views only: squared error to the targets per element), plus whatever
    ``extra(view, held_out_aux_rows)`` returns (membership inference uses this).
    ``unpaired`` views (already fitted without pairs) join the candidates after the others.
    """
    views = candidate_views(X_rel.shape[1], X.shape[1], len(aux)) + list(unpaired)
    if not views:
        return Attacker([], {})
    R = np.asarray(X_rel[aux], dtype=np.float64)
    T = pairs.targets(X, aux)
    if len(aux) == 0:  # nothing to fit or validate on: the release as is (identity)
        return Attacker(views, {v.name: {} for v in views})
    if len(aux) >= 4:
        order = rng.permutation(len(aux))
        folds = [order[: len(aux) // 2], order[len(aux) // 2 :]]
        splits = [(folds[0], folds[1][:VALIDATION_ROWS]), (folds[1], folds[0][:VALIDATION_ROWS])]
    else:
        everything = np.arange(len(aux))
        splits = [(everything, everything[:VALIDATION_ROWS])]
    validation: dict[str, dict[str, float]] = {}
    for view in views:
        totals: dict[str, float] = {}
        count = 0
        for fit_idx, val_idx in splits:
            view.fit(R[fit_idx], T[fit_idx])
            hits = link_success(view.release_side(R[val_idx]), view.original_side(X), pairs, aux[val_idx], device,
                                view.metric)
            part = {"reid": float(hits.sum())}
            if view.direction == "reverse":
                part["mse"] = float(((view.release_side(R[val_idx]) - T[val_idx]) ** 2).mean(1).sum())
            if extra is not None:
                part.update({k: v * len(val_idx) for k, v in extra(view, aux[val_idx]).items()})
            for k, v in part.items():
                totals[k] = totals.get(k, 0.0) + v
            count += len(val_idx)
        scores = {k: v / count for k, v in totals.items()}
        if "mse" in scores:
            scores["neg_mse"] = -scores["mse"]
        validation[view.name] = scores
    return Attacker([v.fit(R, T) for v in views], validation)
