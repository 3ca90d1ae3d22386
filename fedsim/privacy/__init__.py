"""Privacy metrics and emulated attacks on one client's release.

``evaluate(X, y, X_rel, y_rel, ...)`` returns a dict with exactly the keys in ``KEYS``
(floats; NaN where a metric is undefined for this release, as documented per metric):

==========================  ==================================================  ==========
key                         what it is                                          module
==========================  ==================================================  ==========
overlap                     fraction of released rows exactly equal to an       study
                            original (the study's metric, as a fraction)
near_overlap                fraction of released rows within τ of an original,  study
                            τ = 0.1 × median nearest-neighbour gap of X
reconstruction_error        row-aligned element-wise MSE release vs sources     study
                            (= noise variance for additive noise; NaN if d'≠d)
projection_robustness       |Δ mean pairwise distance| (the study's; geometry)   study
reidentification_rate       linkage attack with aux pairs and fitted alignment  linkage
reidentification_baseline   random-linking rate (mean group size / n)           linkage
mia_auc                     membership inference AUC vs ``X_control``           membership
inversion_mse               attacker's reconstruction error on unseen rows      inversion
inversion_cosine            centred cosine of reconstruction vs truth           inversion
==========================  ==================================================  ==========

The study's metrics (overlap, reconstruction_error, projection_robustness) cannot detect a
permutation or rotation (see design/seed-analysis.md §6.3); the attack metrics can. The
attacks share one attacker (``alignment.fit_attacker``): it knows ``aux_fraction`` of the
(original, released) pairs, fits maps between released and original space on them
(identity, Procrustes, column matching, ridge; both directions) and picks, per attack, the
one that works best on held-out aux pairs. Read ``reidentification_rate`` against
``reidentification_baseline``: for aggregating methods a success means finding *a* member
of the group (the baseline is mean group size / n), which is easy for centroids and says
nothing about which member; there ``mia_auc`` and the group size matter more.

Sampling. Every computation that would be quadratic runs on seeded samples of at most
``max_samples`` rows (queries), always searching against all originals; distances are
computed in chunks on ``device`` (``fedsim.device.best_device``), never as an n×n matrix.
The same inputs and ``seed`` give the same numbers (each metric draws from its own stream
``fedsim.seeding.rng(seed, "privacy", <name>)``).

``groups`` (see ``pairs``): None for per-record methods (row j from X[j]); for aggregating
methods a list of m index arrays (row j built from X[groups[j]]); an empty array marks a
synthetic row without a source. With ``groups=None`` and m != n no correspondence is
assumed (synthetic release): source-based metrics are NaN, every original counts as a
member for ``mia_auc``, and the attacker, with no pairs, can only use the release as is
(identity map, when d' == d).

Labels ``y``/``y_rel`` are validated but not used by the attacks (label-aware linking would
be stronger: the rates here are a lower bound).
"""

from __future__ import annotations

import math

import numpy as np

from fedsim.device import best_device
from fedsim.privacy import membership, study
from fedsim.privacy.alignment import fit_attacker
from fedsim.privacy.inversion import inversion_scores
from fedsim.privacy.linkage import reidentification_baseline, reidentification_rate
from fedsim.privacy.pairs import build_pairs, split_aux
from fedsim.seeding import rng

KEYS = (
    "overlap",
    "near_overlap",
    "reconstruction_error",
    "projection_robustness",
    "reidentification_rate",
    "reidentification_baseline",
    "mia_auc",
    "inversion_mse",
    "inversion_cosine",
)

__all__ = ["KEYS", "evaluate"]


def _check(name: str, A, ndim: int) -> np.ndarray:
    A = np.asarray(A)
    if A.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {A.shape}")
    if ndim == 2 and not np.issubdtype(A.dtype, np.floating):
        A = A.astype(np.float32)
    if ndim == 2 and not np.isfinite(A).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return A


def evaluate(
    X: np.ndarray,
    y: np.ndarray,
    X_rel: np.ndarray,
    y_rel: np.ndarray,
    groups=None,
    X_control: np.ndarray | None = None,
    aux_fraction: float = 0.1,
    seed: int = 0,
    max_samples: int = 5000,
    device: str = "auto",
) -> dict[str, float]:
    """Measure what the release ``X_rel`` (m, d') gives away about ``X`` (n, d); see module doc."""
    X, X_rel = _check("X", X, 2), _check("X_rel", X_rel, 2)
    y, y_rel = _check("y", y, 1), _check("y_rel", y_rel, 1)
    if y.shape[0] != X.shape[0] or y_rel.shape[0] != X_rel.shape[0]:
        raise ValueError(f"labels must match rows: X {X.shape}, y {y.shape}, X_rel {X_rel.shape}, y_rel {y_rel.shape}")
    if not 0.0 <= aux_fraction < 1.0:
        raise ValueError(f"aux_fraction must be in [0, 1), got {aux_fraction}")
    if int(max_samples) < 2:
        raise ValueError(f"max_samples must be at least 2, got {max_samples}")
    if X_control is not None:
        X_control = _check("X_control", X_control, 2)
    max_samples = int(max_samples)
    dev = best_device(device)
    pairs = build_pairs(X.shape[0], X_rel.shape[0], groups)

    out: dict[str, float] = dict.fromkeys(KEYS, math.nan)
    if X.shape[0] == 0 or X_rel.shape[0] == 0:
        return out
    out["overlap"] = study.overlap(X, X_rel)
    out["near_overlap"] = study.near_overlap(X, X_rel, max_samples, rng(seed, "privacy", "near"), dev)
    out["reconstruction_error"] = study.reconstruction_error(X, X_rel, pairs, max_samples, rng(seed, "privacy", "recon"))
    out["projection_robustness"] = study.projection_robustness(X, X_rel, pairs, max_samples, rng(seed, "privacy", "proj"), dev)

    aux, heldout = split_aux(pairs, aux_fraction, max_samples, rng(seed, "privacy", "aux"))
    mia = membership.setup(X, X_rel, X_control, pairs, aux, max_samples, rng(seed, "privacy", "mia"), dev)
    attacker = fit_attacker(X, X_rel, pairs, aux, rng(seed, "privacy", "alignment"), dev,
                            extra=mia.validate if mia is not None else None)
    sample = rng(seed, "privacy", "heldout")
    evaluated = np.sort(sample.choice(heldout, size=max_samples, replace=False)) if len(heldout) > max_samples else heldout
    out["reidentification_rate"] = reidentification_rate(attacker.reid_view, X, X_rel, pairs, evaluated, dev)
    out["reidentification_baseline"] = reidentification_baseline(pairs, evaluated)
    out["mia_auc"] = mia.auc(attacker) if mia is not None else math.nan
    out["inversion_mse"], out["inversion_cosine"] = inversion_scores(attacker.inversion_view, X, X_rel, pairs, aux, evaluated)
    return {k: float(v) for k, v in out.items()}
