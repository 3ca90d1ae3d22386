"""Sample sizes and 95% intervals for every privacy estimate, and the minimum sizes below
which an estimate is not reported.

An attack is run on a sample of records, so every figure it gives is an estimate; a
reviewer needs its sample size and its uncertainty to read it (an AUC of 0.94 from 4
members against 4 non-members says almost nothing). Intervals:

* rates (k successes out of n independent trials): Wilson score interval,
  (p̂ + z²/2n ± z √(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n) — never outside [0, 1], never
  empty at p̂ = 0 or 1, and it always contains p̂;
* ROC AUC (members against non-members): DeLong's variance from the structural components
  (midranks, so ties count one half), normal interval clipped to [0, 1]. At an AUC of
  exactly 0 or 1 the variance is 0 and the interval collapses to the point (the data
  show no overlap at all; read ``mia_auc_n_*`` next to it);
* means (cosines): mean ± z s/√n (s the sample standard deviation).

z = 1.96 (95%, two-sided). Below the minimum sizes (``MIN_RATE_N`` evaluated records for a
rate or a mean, ``MIN_AUC_N`` members AND non-members for an AUC) the estimate is NaN and
the family's ``*_reason`` is ``REASON_TOO_FEW``; ``REASONS`` lists every reason code.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

Z95 = 1.959963984540054
#: fewest evaluated records for a rate or a mean to be reported
MIN_RATE_N = 20
#: fewest members, and fewest non-members, for an AUC to be reported
MIN_AUC_N = 10

#: why a family of metrics is NaN (``*_reason`` keys; floats travel in Flower's MetricRecord)
REASON_OK = 0
REASON_NO_SOURCE = 1
REASON_TOO_FEW = 2
REASON_NO_CONTROL = 3
REASON_NO_MAP = 4
REASON_EMPTY = 5
REASONS = {
    REASON_OK: "measured",
    REASON_NO_SOURCE: "no released row has a source (synthetic release, groups=None and m != n)",
    REASON_TOO_FEW: "fewer evaluated records than the documented minimum",
    REASON_NO_CONTROL: "no usable control set (X_control None or fewer than 4 rows)",
    REASON_NO_MAP: "the attacker has no map between released and original space",
    REASON_EMPTY: "no original or no released row",
}


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (nan, nan) when n == 0."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes <= 0 else max(0.0, centre - half)  # exact bounds, not rounding residue
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


def delong(labels: np.ndarray, score: np.ndarray, z: float = Z95) -> tuple[float, float, float]:
    """(AUC, low, high): AUC of ``score`` (higher = positive) for labels 1 vs 0, with
    DeLong's 95% interval."""
    labels = np.asarray(labels).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[labels], score[~labels]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return math.nan, math.nan, math.nan
    ranks = rankdata(np.concatenate([pos, neg]))  # midranks
    v10 = (ranks[:m] - rankdata(pos)) / n  # per positive: fraction of negatives below it
    v01 = 1.0 - (ranks[m:] - rankdata(neg)) / m  # per negative: fraction of positives above it
    auc = float(v10.mean())
    var = (v10.var(ddof=1) / m if m > 1 else 0.0) + (v01.var(ddof=1) / n if n > 1 else 0.0)
    half = z * math.sqrt(max(var, 0.0))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def mean_ci(values: np.ndarray, z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high) with the normal interval of the mean."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    half = z * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else math.inf
    return mean, mean - half, mean + half
