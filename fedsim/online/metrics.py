"""Continual-learning metrics from a round x domain accuracy matrix.

The original study summarised a single accuracy series with home-made "forgetting",
"BWT+" and "FWT" (seed analysis §4.4, §6.4): per-round drops and rises of one curve,
which in an i.i.d. stream measure only sampling noise.  The standard metrics need the
accuracy on *every* domain seen so far after *each* round, so they take the matrix ``R``:

    R[i, j] = accuracy after training round i (0-based) on the test domain of round j

and, for forward transfer, ``b[j]`` = accuracy on domain j before any training.
``study_metrics`` keeps the study's definitions so results can be compared with it.

References:
    Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual Learning" (ACC, BWT, FWT).
    Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning" (forgetting F).
    Díaz-Rodríguez et al. 2018, "Don't forget, there is more than forgetting" (BWT+, REM).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NAN = float("nan")


def _accuracies(values: object, name: str, ndim: int) -> np.ndarray:
    """Accuracies as a float array, refusing what would silently give wrong metrics."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains nan or inf")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"{name} must hold accuracies in [0, 1], got range [{arr.min():g}, {arr.max():g}]")
    return arr


def continual_metrics(R: object, b: object | None = None) -> dict[str, float]:
    """Standard continual-learning metrics of the T x T accuracy matrix ``R``.

    With ``final = R[T-1]`` and ``diag[j] = R[j, j]``:

    * ``average_accuracy``  ACC = (1/T) sum_j R[T-1, j]
      (Lopez-Paz & Ranzato 2017; A_T of Chaudhry et al. 2018).
    * ``mean_round_accuracy`` = (1/T) sum_i R[i, i], the current domain's accuracy averaged
      over rounds; in an i.i.d. stream this is the original study's "Avg Accuracy".
    * ``average_forgetting``  F = (1/(T-1)) sum_{j=0}^{T-2} f_j with
      f_j = max_{l in 0..T-2} R[l, j] - R[T-1, j]  (Chaudhry et al. 2018).
    * ``backward_transfer``  BWT = (1/(T-1)) sum_{j=0}^{T-2} (R[T-1, j] - R[j, j])
      (Lopez-Paz & Ranzato 2017).
    * ``backward_transfer_all_pairs``  BWT_DR = sum_{i=1}^{T-1} sum_{j=0}^{i-1}
      (R[i, j] - R[j, j]) / (T(T-1)/2), every later round against every earlier domain
      (Díaz-Rodríguez et al. 2018).
    * ``positive_backward_transfer``  BWT+ = max(BWT_DR, 0) and ``remembering``
      REM = 1 - |min(BWT_DR, 0)|  (Díaz-Rodríguez et al. 2018).
    * ``forward_transfer``  FWT = (1/(T-1)) sum_{j=1}^{T-1} (R[j-1, j] - b[j])
      (Lopez-Paz & Ranzato 2017); needs ``b``.

    Metrics that compare rounds are nan when T == 1; FWT is also nan without ``b``.
    """
    R = _accuracies(R, "R", 2)
    T = R.shape[0]
    if R.shape != (T, T):
        raise ValueError(f"R must be square (rounds x domains), got shape {R.shape}")
    if b is not None:
        b = _accuracies(b, "b", 1)
        if b.shape[0] != T:
            raise ValueError(f"b must have one accuracy per domain (len {T}), got len {b.shape[0]}")

    final = R[T - 1]
    diag = np.diag(R)
    metrics = {
        "average_accuracy": float(final.mean()),
        "mean_round_accuracy": float(diag.mean()),
        "average_forgetting": NAN,
        "backward_transfer": NAN,
        "backward_transfer_all_pairs": NAN,
        "positive_backward_transfer": NAN,
        "remembering": NAN,
        "forward_transfer": NAN,
    }
    if T == 1:
        return metrics

    # f_j: best accuracy on domain j before the last round minus the final one (j < T-1)
    metrics["average_forgetting"] = float((R[:-1, :-1].max(axis=0) - final[:-1]).mean())
    metrics["backward_transfer"] = float((final[:-1] - diag[:-1]).mean())
    later, earlier = np.tril_indices(T, k=-1)  # all (i, j) with i > j
    bwt_dr = float((R[later, earlier] - diag[earlier]).sum() / (T * (T - 1) / 2))
    metrics["backward_transfer_all_pairs"] = bwt_dr
    metrics["positive_backward_transfer"] = max(bwt_dr, 0.0)
    metrics["remembering"] = 1.0 - abs(min(bwt_dr, 0.0))
    if b is not None:
        # R[j-1, j]: accuracy on domain j just before training on it
        metrics["forward_transfer"] = float((np.diag(R, k=1) - b[1:]).mean())
    return metrics


def study_metrics(acc: Sequence[float] | np.ndarray) -> dict[str, float]:
    """The original study's online metrics on one accuracy series ``acc[r]`` (seed analysis §4.4).

    For i = 1..n-1 (each averaged over those i; nan when n == 1):

    * ``study_average_accuracy`` = mean(acc) (over all n rounds);
    * ``study_forgetting``       = mean(max(acc[:i]) - acc[i]);
    * ``study_bwt_plus``         = mean(max(acc[i-1] - acc[i], 0));
    * ``study_fwt``              = mean(max(acc[i] - acc[i-1], 0)).

    Kept only so results can be set next to the study's.  These are not the standard
    metrics: the study tests every round on one fixed test set, so there is no
    round x domain matrix; its "BWT+" is the mean per-round *drop* and its "FWT" the mean
    per-round *rise* of the same curve, so per round at most one of them is non-zero, and
    none of them says whether earlier domains were forgotten (use ``continual_metrics``).
    """
    acc = _accuracies(acc, "acc", 1)
    n = acc.shape[0]
    metrics = {
        "study_average_accuracy": float(acc.mean()),
        "study_forgetting": NAN,
        "study_bwt_plus": NAN,
        "study_fwt": NAN,
    }
    if n == 1:
        return metrics
    best_before = np.maximum.accumulate(acc)[:-1]  # max(acc[:i]) for i = 1..n-1
    step = np.diff(acc)  # acc[i] - acc[i-1]
    metrics["study_forgetting"] = float((best_before - acc[1:]).mean())
    metrics["study_bwt_plus"] = float(np.maximum(-step, 0.0).mean())
    metrics["study_fwt"] = float(np.maximum(step, 0.0).mean())
    return metrics


def timing_summary(train_s: Sequence[float], infer_s: Sequence[float]) -> dict[str, float]:
    """Mean per-round training and inference wall time, the study's timing columns."""
    out = {}
    for key, name, values in (("avg_training_time_s", "train_s", train_s),
                              ("avg_inference_time_s", "infer_s", infer_s)):
        arr = np.asarray(values, dtype=float)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{name} must be a non-empty list of seconds, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)) or arr.min() < 0.0:
            raise ValueError(f"{name} must hold finite, non-negative seconds")
        out[key] = float(arr.mean())
    return out
