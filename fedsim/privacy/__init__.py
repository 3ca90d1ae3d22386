"""Privacy metrics and emulated attacks on one client's release.

``evaluate(X, y, X_rel, y_rel, ...)`` returns a dict with exactly the keys in ``KEYS``
(floats: they travel in a Flower MetricRecord; NaN where a metric is undefined for this
release or rests on too few records); ``assess(...)`` returns the same dict with every
attack's own result (``Assessment``). The attacker's knowledge is an ``AttackerProfile``
(``profile``; ``profile_for(anonymizer)`` builds the server's from a fitted anonymizer).

==================================  ========================================================  ==========
key                                 what it is                                                module
==================================  ========================================================  ==========
overlap                             fraction of released rows exactly equal to an             study
                                    original (the study's metric; a census of all rows,
                                    no sampling, so no interval)
near_overlap                        fraction of released rows within τ of an original,        study
                                    τ = 0.1 × median nearest-neighbour gap of X
near_overlap_n, _ci_low, _ci_high   rows it was measured on; Wilson 95% interval              study
reconstruction_error                row-aligned element-wise MSE release vs sources           study
                                    (= noise variance for additive noise; NaN if d'≠d)
projection_robustness               |Δ mean pairwise distance| (the study's; geometry)        study
reidentification_rate               best linkage attack of the menu: fraction of evaluated    linkage
                                    released rows linked to (one of) their source(s)
reidentification_rate_n             evaluated released rows (|E|)                             linkage
reidentification_rate_ci_low/high   Wilson 95% interval of the rate                           linkage
reidentification_rate_member        best rate of naming one random member of the group        linkage
                                    (= the rate for per-record releases)
reidentification_rate_member_ci_*   its Wilson 95% interval (n = |E|)                         linkage
reidentification_baseline           random-linking rate (mean group size / n; within the      linkage
                                    released label when labels are used)
reidentification_attack             winner: 10 × space + rule (``linkage`` tables)            linkage
reidentification_reason             ``REASONS`` code of the linkage family                    linkage
mia_auc                             membership inference AUC vs ``X_control``                 membership
mia_auc_n_members, _n_nonmembers    test members and non-members                              membership
mia_auc_ci_low, mia_auc_ci_high     DeLong 95% interval                                       membership
mia_attack                          10 × space + score (1 calibrated, 2 rival, 3 dcr)         membership
mia_reason                          ``REASONS`` code                                          membership
inversion_mse                       attacker's reconstruction error on unseen rows            inversion
inversion_cosine                    centred cosine of reconstruction vs target                inversion
inversion_n                         released rows scored                                      inversion
inversion_cosine_ci_low/high        normal 95% interval of the mean cosine                    inversion
inversion_mse_member                the reconstruction against one random member              inversion
inversion_cosine_member             ... and its cosine (aggregating methods: < the plain      inversion
                                    cosine, which is 1 for any noise-free group mean)
inversion_cosine_member_ci_*        normal 95% interval                                       inversion
inversion_attack                    space of the reverse map (``attacks.SPACES``)             inversion
inversion_reason                    ``REASONS`` code                                          inversion
==================================  ========================================================  ==========

Codes. Spaces (``attacks.SPACES``): 1 aligned (maps fitted on known pairs, or identity),
2 likelihood (known noise mechanism), 3 quantile-columns, 4 subspace, 5 self-pca,
6 self-training. Linkage rules: 1 nearest, 2 nearest within label, 3 assignment,
4 assignment within label. 0 = no attack ran. Reasons (``REASONS``, ``stats``): 0 measured,
1 no released row has a source, 2 below the minimum sample size (``stats.MIN_RATE_N`` = 20
evaluated rows for rates and cosines, ``stats.MIN_AUC_N`` = 10 members and 10 non-members
for the AUC), 3 no usable control set, 4 no map between released and original space,
5 empty input. Sample sizes are reported even when the metric is NaN.

Intervals (``stats``): Wilson for rates, DeLong for the AUC, normal for mean cosines; all
95%. The linkage rate is the maximum over the attacks of the menu, which the interval of
the winning attack does not account for: with a few strongly correlated attacks the
optimism is small against the interval's width, and it errs on the side of reporting
more risk.

The study's metrics (overlap, reconstruction_error, projection_robustness) cannot detect a
permutation or rotation (see design/seed-analysis.md §6.3); the attack metrics can.
Read ``reidentification_rate`` against ``reidentification_baseline``: for aggregating
methods a success means finding *a* member of the group (the baseline is mean group size /
n); ``reidentification_rate_member`` and ``inversion_*_member`` say what the attacker
learns about one record.

Sampling. Every computation that would be quadratic runs on seeded samples of at most
``max_samples`` rows (queries), always searching against all originals; distances are
computed in chunks on ``device`` (``fedsim.device.best_device``), never as an n×n matrix
(the assignment's blocks are bounded, ``attacks.assignment``). The same inputs and
``seed`` give the same numbers (each metric draws from its own stream
``fedsim.seeding.rng(seed, "privacy", <name>)``).

``groups`` (see ``pairs``): None for per-record methods (row j from X[j]); for aggregating
methods a list of m index arrays (row j built from X[groups[j]]); an empty array marks a
synthetic row without a source. With ``groups=None`` and m != n no correspondence is
assumed (synthetic release): source-based metrics are NaN, every original counts as a
member for ``mia_auc``, and the attacker, with no pairs, can only use the release as is
(identity map, when d' == d) or a pair-free view.
"""

from __future__ import annotations

import math
from typing import Any
from dataclasses import dataclass, field

import numpy as np
import torch

from fedsim.device import best_device
from fedsim.privacy import membership, study
from fedsim.privacy.alignment import View, fit_attacker
from fedsim.privacy.attacks import SPACES, space_of
from fedsim.privacy.attacks.noise import NoiseView
from fedsim.privacy.attacks.quantiles import QuantileColumnMap
from fedsim.privacy.attacks.subspace import SelfPCAMap, SubspaceMap, release_rank
from fedsim.privacy.inversion import NAN3, InversionResult, inversion_scores
from fedsim.privacy.linkage import LinkOutcome, LinkSetup, attack_space, reidentification_baseline
from fedsim.privacy.membership import MembershipResult
from fedsim.privacy.pairs import Pairs, build_pairs, split_aux
from fedsim.privacy.profile import AttackerProfile, profile_for
from fedsim.privacy.stats import (MIN_RATE_N, REASON_EMPTY, REASON_NO_CONTROL, REASON_NO_MAP, REASON_NO_SOURCE,
                                  REASON_OK, REASON_TOO_FEW, REASONS, wilson)
from fedsim.seeding import rng

KEYS = (
    # the original keys (unchanged meaning, now each the best attack's figure)
    "overlap",
    "near_overlap",
    "reconstruction_error",
    "projection_robustness",
    "reidentification_rate",
    "reidentification_baseline",
    "mia_auc",
    "inversion_mse",
    "inversion_cosine",
    # sample sizes, intervals, per-member scores, winners and reasons
    "near_overlap_n",
    "near_overlap_ci_low",
    "near_overlap_ci_high",
    "reidentification_rate_n",
    "reidentification_rate_ci_low",
    "reidentification_rate_ci_high",
    "reidentification_rate_member",
    "reidentification_rate_member_ci_low",
    "reidentification_rate_member_ci_high",
    "reidentification_attack",
    "reidentification_reason",
    "mia_auc_n_members",
    "mia_auc_n_nonmembers",
    "mia_auc_ci_low",
    "mia_auc_ci_high",
    "mia_attack",
    "mia_reason",
    "inversion_n",
    "inversion_cosine_ci_low",
    "inversion_cosine_ci_high",
    "inversion_mse_member",
    "inversion_cosine_member",
    "inversion_cosine_member_ci_low",
    "inversion_cosine_member_ci_high",
    "inversion_attack",
    "inversion_reason",
)

__all__ = ["KEYS", "REASONS", "SPACES", "AttackerProfile", "Assessment", "assess", "evaluate", "profile_for"]


@dataclass
class Assessment:
    """``metrics`` (the ``KEYS`` dict) and what produced them."""

    metrics: dict[str, float]
    linkage: list[LinkOutcome] = field(default_factory=list)  # every linkage attack run, on the same rows
    membership: MembershipResult | None = None
    inversion: InversionResult | None = None

    def table(self) -> list[dict[str, float | str]]:
        """One row per attack run: family, attack name, code, value, n, 95% interval."""
        rows: list[dict[str, float | str]] = []
        for o in self.linkage:
            lo, hi = wilson(float(o.hits.sum()), len(o.hits))
            rows.append({"family": "reidentification", "attack": o.name, "view": o.view, "code": o.code,
                         "value": float(o.hits.mean()), "n": len(o.hits), "ci_low": lo, "ci_high": hi})
        m = self.membership
        if m is not None and m.code:
            rows.append({"family": "membership", "attack": m.name, "view": m.view, "code": m.code, "value": m.auc,
                         "n": m.n_members + m.n_nonmembers, "ci_low": m.ci_low, "ci_high": m.ci_high})
        v = self.inversion
        if v is not None and v.code:
            rows.append({"family": "inversion", "attack": SPACES[v.code], "view": v.view, "code": v.code,
                         "value": v.cosine[0], "n": v.n, "ci_low": v.cosine[1], "ci_high": v.cosine[2]})
        return rows


def _check(name: str, A, ndim: int) -> np.ndarray:
    A = np.asarray(A)
    if A.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {A.shape}")
    if ndim == 2 and not np.issubdtype(A.dtype, np.floating):
        A = A.astype(np.float32)
    if ndim == 2 and not np.isfinite(A).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return A


def pair_free_views(X_rel: np.ndarray, population: np.ndarray, profile: AttackerProfile,
                    everything_if_unknown: bool) -> list:
    """The views that need no known pair: the noise mechanism's space, and the profile's
    pair-free spaces the shapes allow, fitted on the release and ``population``."""
    d_rel, d = X_rel.shape[1], population.shape[1]
    views: list = []
    if profile.noise is not None and d_rel == d:
        views.append(NoiseView(profile.noise["kind"], profile.noise["scale"], profile.noise.get("clip_norm")))
    for name in profile.pair_free(everything_if_unknown):
        if name == "quantile-columns" and d_rel == d and len(population) >= 2:
            views.append(View("reverse", QuantileColumnMap(X_rel, population)))
        elif name == "subspace" and d_rel == d and len(X_rel) >= 2:
            mean, basis = release_rank(X_rel)
            if 0 < len(basis) < d:
                views.append(View("forward", SubspaceMap(mean, basis)))
        elif name == "self-pca" and d_rel < d and len(population) > d_rel:
            views.append(View("forward", SelfPCAMap(X_rel, population)))
    return views


def _linkage(X: np.ndarray, y: np.ndarray, X_rel: np.ndarray, y_rel: np.ndarray, pairs: Pairs, aux: np.ndarray,
             heldout: np.ndarray, evaluated: np.ndarray, members: np.ndarray, profile: AttackerProfile,
             seed: int, device: torch.device) -> tuple[list[LinkOutcome], int]:
    """Every attack of the menu (``linkage``) on the evaluated rows, and the family's reason."""
    if len(pairs.sourced) == 0:
        return [], REASON_NO_SOURCE
    if len(evaluated) < MIN_RATE_N:
        return [], REASON_TOO_FEW
    unpaired = pair_free_views(X_rel, X, profile, everything_if_unknown=True)
    aligned = fit_attacker(X, X_rel, pairs, aux, rng(seed, "privacy", "linkage"), device).reid_view
    views = ([aligned] if aligned is not None else []) + unpaired
    if not views:
        return [], REASON_NO_MAP
    # self-training refines a projection's map, from the pairs' map or else the attacker's own PCA
    start = views[0] if X_rel.shape[1] != X.shape[1] else None
    setup = LinkSetup(X, y, X_rel, y_rel, pairs, aux, heldout, evaluated, members, profile.labels, device)
    outcomes: list[LinkOutcome] = []
    for view in views:
        outcomes += attack_space(setup, view, space_of(view), bootstrap=view is start)
    return outcomes, REASON_OK


def _put_rate(out: dict[str, float], key: str, hits: np.ndarray) -> None:
    out[key] = float(hits.mean())
    out[f"{key}_ci_low"], out[f"{key}_ci_high"] = wilson(float(hits.sum()), len(hits))


def assess(
    X: np.ndarray,
    y: np.ndarray,
    X_rel: np.ndarray,
    y_rel: np.ndarray,
    groups=None,
    X_control: np.ndarray | None = None,
    aux_fraction: float | None = None,
    seed: int = 0,
    max_samples: int = 5000,
    device: str = "auto",
    profile: AttackerProfile | None = None,
) -> Assessment:
    """Measure what the release ``X_rel`` (m, d') gives away about ``X`` (n, d) to the
    attacker of ``profile`` (default: ``AttackerProfile()``; ``aux_fraction``, when given,
    replaces the profile's); see the module doc."""
    X, X_rel = _check("X", X, 2), _check("X_rel", X_rel, 2)
    y, y_rel = _check("y", y, 1), _check("y_rel", y_rel, 1)
    if y.shape[0] != X.shape[0] or y_rel.shape[0] != X_rel.shape[0]:
        raise ValueError(f"labels must match rows: X {X.shape}, y {y.shape}, X_rel {X_rel.shape}, y_rel {y_rel.shape}")
    profile = profile or AttackerProfile()
    if aux_fraction is not None:
        if not 0.0 <= aux_fraction < 1.0:
            raise ValueError(f"aux_fraction must be in [0, 1), got {aux_fraction}")
        profile = profile.replace(aux_fraction=aux_fraction)
    if profile.noise is not None and np.ndim(profile.noise["scale"]) == 1 and X_rel.shape[1] == X.shape[1] \
            and len(profile.noise["scale"]) != X.shape[1]:
        raise ValueError(f"the noise scale has {len(profile.noise['scale'])} features, the data {X.shape[1]}")
    if int(max_samples) < 2:
        raise ValueError(f"max_samples must be at least 2, got {max_samples}")
    if X_control is not None:
        X_control = _check("X_control", X_control, 2)
    max_samples = int(max_samples)
    dev = best_device(device)
    pairs = build_pairs(X.shape[0], X_rel.shape[0], groups)

    out: dict[str, float] = dict.fromkeys(KEYS, math.nan)
    if X.shape[0] == 0 or X_rel.shape[0] == 0:
        for family in ("reidentification", "mia", "inversion"):
            out[f"{family}_reason"] = float(REASON_EMPTY)
        return Assessment(out)
    out["overlap"] = study.overlap(X, X_rel)
    near = study.near_overlap(X, X_rel, max_samples, rng(seed, "privacy", "near"), dev)
    if not math.isnan(near):
        n_near = min(X_rel.shape[0], max_samples)
        out["near_overlap_n"] = float(n_near)
        if n_near >= MIN_RATE_N:
            out["near_overlap"] = near
            out["near_overlap_ci_low"], out["near_overlap_ci_high"] = wilson(round(near * n_near), n_near)
    out["reconstruction_error"] = study.reconstruction_error(X, X_rel, pairs, max_samples, rng(seed, "privacy", "recon"))
    out["projection_robustness"] = study.projection_robustness(X, X_rel, pairs, max_samples, rng(seed, "privacy", "proj"), dev)

    aux, heldout = split_aux(pairs, profile.aux_fraction, max_samples, rng(seed, "privacy", "aux"), profile.n_aux)
    sample = rng(seed, "privacy", "heldout")
    evaluated = np.sort(sample.choice(heldout, size=max_samples, replace=False)) if len(heldout) > max_samples else heldout
    members = pairs.sample_members(evaluated, rng(seed, "privacy", "member"))

    links, reason = _linkage(X, y, X_rel, y_rel, pairs, aux, heldout, evaluated, members, profile, seed, dev)
    out["reidentification_rate_n"] = float(len(evaluated))
    out["reidentification_reason"] = float(reason)
    out["reidentification_baseline"] = reidentification_baseline(pairs, evaluated, *((y, y_rel) if profile.labels
                                                                                    else (None, None)))
    if links:
        best = max(links, key=lambda o: (float(o.hits.mean()), -o.code))
        _put_rate(out, "reidentification_rate", best.hits)
        _put_rate(out, "reidentification_rate_member", max(links, key=lambda o: (float(o.member_hits.mean()),
                                                                                  -o.code)).member_hits)
        out["reidentification_attack"] = float(best.code)

    mia = membership.setup(X, X_rel, X_control, pairs, aux, max_samples, rng(seed, "privacy", "mia"), dev,
                           reference=profile.reference)
    ref_views = pair_free_views(X_rel, mia.P, profile, everything_if_unknown=False) \
        if mia is not None and profile.reference else pair_free_views(X_rel, X[:0], profile, False)
    attacker = fit_attacker(X, X_rel, pairs, aux, rng(seed, "privacy", "alignment"), dev,
                            extra=mia.validate if mia is not None else None, unpaired=ref_views)
    if mia is None:
        out["mia_reason"] = float(REASON_NO_CONTROL)
        mres = None
    else:
        mres = mia.run(attacker, preferred=ref_views[0] if ref_views else None)
        out["mia_auc"], out["mia_auc_ci_low"], out["mia_auc_ci_high"] = mres.auc, mres.ci_low, mres.ci_high
        out["mia_auc_n_members"], out["mia_auc_n_nonmembers"] = float(mres.n_members), float(mres.n_nonmembers)
        out["mia_attack"], out["mia_reason"] = float(mres.code), float(mres.reason)

    reverse_free = [v for v in ref_views if v.direction == "reverse"]
    inv_view = attacker.inversion_view if len(aux) or not reverse_free else reverse_free[0]
    if len(pairs.sourced) == 0:
        inv = InversionResult(math.nan, NAN3, math.nan, NAN3, 0, 0, REASON_NO_SOURCE)
    else:
        inv = inversion_scores(inv_view, X, X_rel, pairs, aux, evaluated, members)
    out["inversion_mse"], out["inversion_mse_member"] = inv.mse, inv.mse_member
    out["inversion_cosine"], out["inversion_cosine_ci_low"], out["inversion_cosine_ci_high"] = inv.cosine
    out["inversion_cosine_member"], out["inversion_cosine_member_ci_low"], out["inversion_cosine_member_ci_high"] = \
        inv.cosine_member
    out["inversion_n"], out["inversion_attack"] = float(inv.n), float(inv.code)
    out["inversion_reason"] = float(inv.reason)
    return Assessment({k: float(v) for k, v in out.items()}, links, mres, inv)


def evaluate(*args: Any, **kwargs: Any) -> dict[str, float]:
    """``assess(...).metrics``: the ``KEYS`` dict of floats (same arguments as :func:`assess`)."""
    return assess(*args, **kwargs).metrics
