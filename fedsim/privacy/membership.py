"""Membership inference: does the release reveal whether a given record was in it?

Threat model. The attacker has the release, its aux pairs (known members with their
released rows), and a reference population of the same distribution known NOT to be in the
release. Given a candidate embedding c it decides whether c was in the client's training
set. It does not know the other originals.

Data. The held-out control set ``X_control`` (e.g. the client's query embeddings) is split
at random into two halves: the attacker's reference population P and the non-member test
candidates (without a reference population, ``profile.reference = False``, all of it is
test candidates). Member test candidates are a seeded sample of the originals that
contributed to the release minus the aux pairs' originals (the attacker already knows
those). Members and non-members are each at most ``max_samples // 2`` (P too); their
numbers may differ (the AUC does not depend on the ratio, and more members narrow its
interval).

Scores (lower = more likely a member), computed in the comparison space of a view v of
``alignment`` (reverse: released rows mapped to original space; forward: candidates mapped
to release space), with r*(c) the released row closest to c:

    dcr(c)        = |v_orig(c) − v_rel(r*(c))|                      (distance to closest record)
    calibrated(c) = dcr(c) / mean_{p ∈ kNN_P(c)} |c − p|            (k = ``K_REF`` = 5)
    rival(c)      = dcr(c) / min_{p ∈ P, p ≠ c} |v_rel(r*(c)) − v_orig(p)|

dcr measures how well the release explains c. The two calibrations are likelihood-ratio
style: ``calibrated`` divides by how close c is to the population anyway (without it,
candidates in dense regions look like members whether or not they were used); ``rival``
asks whether c explains its closest released row better than any reference point does.
The latter cancels what c and the reference points share — e.g. the length of the noise
vector added to that released row, which dominates every distance under strong isotropic
noise in high dimension — so it keeps working where dcr only sees noise.

Views: those fitted on the aux pairs (``alignment``) and the pair-free views the profile
calls for, fitted on the release and P (``attacks``: the noise mechanism's standardised
space, quantile column matching against P for a permutation, the release's subspace,
self-PCA of P).

Selection on the attacker's own data: every view is cross-fitted on two folds of the aux
pairs (``alignment.fit_attacker``); for the held-out fold, its members (known members whose
pairs were not used for that fit) are scored against up to ``VALIDATION_ROWS`` reference
points of P (left out of their own kNN and rival searches), giving a validation AUC per
(view, score). The pair with the highest validation AUC (ties: simpler view, then
calibrated, rival, dcr) is refitted on all aux pairs and applied to the test candidates.
Without aux pairs (or without P) there is nothing to validate: the attacker trusts the
first pair-free view its profile calls for, else the release as is (identity), with the
calibrated score (dcr without P).

``mia_auc`` = ROC AUC of −score, members (1) against non-members (0), with DeLong's 95%
interval (``stats``). 0.5 = the release tells nothing about membership; 1 = every member is
closer to the release than every non-member (e.g. the release contains the members).
Values below 0.5 occur by chance only: read the interval. ``mia_attack`` = 10 × space
(``attacks.SPACES``) + score (1 calibrated, 2 rival, 3 dcr). NaN when ``X_control`` is
None (``mia_reason`` 3), with fewer than ``stats.MIN_AUC_N`` members or non-members (2; an
aux pair of an aggregated row reveals its whole group, so a release of a few large groups
can leave none), or when the attacker has no view (4: d' != d, no aux pairs, no pair-free
view).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fedsim.privacy.alignment import VALIDATION_ROWS
from fedsim.privacy.attacks import SPACES, space_of
from fedsim.privacy.geometry import knn
from fedsim.privacy.pairs import Pairs
from fedsim.privacy.stats import MIN_AUC_N, REASON_NO_MAP, REASON_OK, REASON_TOO_FEW, delong

K_REF = 5
SCORES = ("mia:calibrated", "mia:rival", "mia:dcr")


def _auc(labels: np.ndarray, score: np.ndarray) -> float:
    if labels.min() == labels.max():
        return math.nan
    return delong(labels, -score)[0]


@dataclass
class MembershipResult:
    auc: float
    ci_low: float
    ci_high: float
    n_members: int
    n_nonmembers: int
    code: int  # 10 * space + score (0: no attack ran)
    reason: int  # stats.REASON_*
    view: str = ""

    @property
    def name(self) -> str:
        """Space and score, e.g. ``quantile-columns/calibrated``."""
        return f"{SPACES[self.code // 10]}/{SCORES[self.code % 10 - 1][len('mia:'):]}" if self.code else ""


class MembershipAttack:
    """Splits the control set, precomputes reference distances, validates and scores views."""

    def __init__(self, X: np.ndarray, X_rel: np.ndarray, X_control: np.ndarray, pairs: Pairs,
                 aux: np.ndarray, max_samples: int, rng: np.random.Generator, device: torch.device,
                 reference: bool = True) -> None:
        self.X, self.X_rel, self.pairs, self.device = X, X_rel, pairs, device
        cap = max(2, max_samples // 2)
        order = rng.permutation(X_control.shape[0])
        half = X_control.shape[0] // 2 if reference else 0
        self.P = X_control[order[:half][:cap]]  # random order: P[:VALIDATION_ROWS] is a random subset
        outsiders = order[half:]
        known = pairs.members_of_rows(aux)
        pool = np.setdiff1d(pairs.member_set(), known)
        n_mem, n_non = min(len(pool), cap), min(len(outsiders), cap)
        self.n_members, self.n_nonmembers = n_mem, n_non
        members = rng.choice(pool, size=n_mem, replace=False) if n_mem else np.zeros(0, np.int64)
        nonmembers = rng.choice(outsiders, size=n_non, replace=False) if n_non else np.zeros(0, np.int64)
        self.test = np.concatenate([X[members], X_control[nonmembers]]).astype(np.float64)
        self.test_labels = np.concatenate([np.ones(n_mem), np.zeros(n_non)])
        k = min(K_REF, len(self.P) - 1)
        self.calibrated = k >= 1
        self.test_scale = self._scale(self.test) if self.calibrated else None
        # validation non-members: the first VALIDATION_ROWS reference points, their kNN
        # distances in P leaving themselves out; validation members: every aux member
        self.P_val = self.P[:VALIDATION_ROWS]
        self.P_scale = (knn(self.P_val, self.P, k, device, exclude=np.arange(len(self.P_val)))[0].mean(1)
                        if self.calibrated else None)
        self.known = known
        self.known_scale = dict(zip(known.tolist(), self._scale(X[known]))) if len(known) and self.calibrated else {}

    def _scale(self, A: np.ndarray) -> np.ndarray:
        if len(A) == 0:
            return np.zeros(0)
        return knn(A, self.P, K_REF, self.device)[0].mean(1)

    def _scores(self, view, cands: np.ndarray, released: np.ndarray, scale: np.ndarray | None,
                in_P: np.ndarray) -> dict[str, np.ndarray]:
        """Scores of ``cands`` (lower = member); ``in_P[t]`` is the index in P of candidate t
        when it is itself a reference point (left out of its own rival search), else -1."""
        dist, nearest = knn(view.original_side(cands), released, 1, self.device)
        dcr = dist[:, 0]
        if not self.calibrated:
            return {"mia:dcr": dcr}
        rival = knn(released[nearest[:, 0]], view.original_side(self.P), 1, self.device, exclude=in_P)[0][:, 0]
        floor = lambda a: np.maximum(a, max(float(np.median(a)) * 1e-9, 1e-30) if len(a) else 1e-30)  # noqa: E731
        return {"mia:calibrated": dcr / floor(scale), "mia:rival": dcr / floor(rival), "mia:dcr": dcr}

    def validate(self, view, val_rows: np.ndarray) -> dict[str, float]:
        """Validation AUC per score: held-out aux members against the reference points."""
        if not self.calibrated:
            return {}
        members = self.pairs.members_of_rows(val_rows)
        cands = np.concatenate([self.X[members], self.P_val]).astype(np.float64)
        scale = np.concatenate([[self.known_scale[i] for i in members.tolist()], self.P_scale])
        labels = np.concatenate([np.ones(len(members)), np.zeros(len(self.P_val))])
        in_P = np.concatenate([np.full(len(members), -1), np.arange(len(self.P_val))])
        released = view.release_side(self.X_rel)
        return {k: _auc(labels, s) for k, s in self._scores(view, cands, released, scale, in_P).items()}

    def run(self, attacker, preferred=None) -> MembershipResult:
        """Test AUC of the (view, score) pair with the best validation AUC; ``preferred`` is
        the view to use when nothing could be validated."""
        sizes = (self.n_members, self.n_nonmembers)
        if not attacker.views:
            return MembershipResult(math.nan, math.nan, math.nan, *sizes, 0, REASON_NO_MAP)
        if min(sizes) < MIN_AUC_N:
            return MembershipResult(math.nan, math.nan, math.nan, *sizes, 0, REASON_TOO_FEW)
        best, best_key, best_val = None, None, -np.inf
        for view in attacker.views:
            for key in SCORES:
                val = attacker.validation[view.name].get(key, math.nan)
                if not math.isnan(val) and val > best_val:
                    best, best_key, best_val = view, key, val
        if best is None:  # nothing validated: the profile's view, calibrated when possible
            best = preferred if preferred is not None else attacker.views[0]
            best_key = SCORES[0] if self.calibrated else "mia:dcr"
        released = best.release_side(self.X_rel)
        in_P = np.full(len(self.test), -1)
        score = self._scores(best, self.test, released, self.test_scale, in_P)[best_key]
        auc, lo, hi = delong(self.test_labels, -score)
        return MembershipResult(auc, lo, hi, *sizes, 10 * space_of(best) + SCORES.index(best_key) + 1,
                                REASON_OK, best.name)


def setup(X: np.ndarray, X_rel: np.ndarray, X_control: np.ndarray | None, pairs: Pairs, aux: np.ndarray,
          max_samples: int, rng: np.random.Generator, device: torch.device,
          reference: bool = True) -> MembershipAttack | None:
    """The attack, or None when membership cannot be measured (no usable control set)."""
    if X_control is None:
        return None
    if X_control.shape[1] != X.shape[1]:
        raise ValueError(f"X_control must have shape (q, {X.shape[1]}), got {X_control.shape}")
    if X_control.shape[0] < 4 or X_rel.shape[0] == 0:
        return None
    return MembershipAttack(X, X_rel, X_control, pairs, aux, max_samples, rng, device, reference)
