"""anonymeter's risks next to fedsim's, for releases in the original feature space.

`anonymeter <https://github.com/statice/anonymeter>`_ (Giomi et al., PoPETs 2023) is the
maintained library for judging synthetic or anonymized tables against the GDPR's three
criteria. fedsim reports two of them (``[privacy] anonymeter = true``):

* **Linkability** -- the attacker holds two disjoint halves of a target's features (first
  half of the embedding dimensions, second half) from two sources and links them through
  the release: the target is linked when the nearest released row of both halves is the
  same row. Risk = (main rate - control rate) / (1 - control rate), where the control rate
  comes from the same attack on records that were NOT released (the client's queries).
* **Inference** -- the attacker knows a target's features and infers its label from the
  nearest released row; same normalisation against the control records.

Both come with anonymeter's 95% confidence intervals (Wilson score on the attack rates).
Where they differ from fedsim's attacks: anonymeter's attacker knows no (original,
released) pairs, no mechanism and no labels-in-clear structure, and links by plain
nearest neighbour on half-vectors -- a weaker, assumption-light attacker; fedsim's rates
assume the documented attacker profile (README). anonymeter measures risk *relative to
control records*, so a release that is no closer to its sources than to unseen records
scores 0 even when fedsim's absolute linkage rate is high.

anonymeter 1.1 pins ``numpy<1.27`` in its metadata but runs with fedsim's numpy 2 (tested):
install it with ``pip install --no-deps anonymeter`` after ``pip install 'fedsim[anonymeter]'``
(its run-time dependencies).
"""

from __future__ import annotations

import math

import numpy as np

from fedsim.seeding import rng

KEYS = ("anonymeter_linkability", "anonymeter_linkability_ci_low", "anonymeter_linkability_ci_high",
        "anonymeter_inference", "anonymeter_inference_ci_low", "anonymeter_inference_ci_high",
        "anonymeter_n_attacks")
#: fewest targets (and control records) for a risk estimate worth reporting
MIN_ATTACKS = 20


def available() -> bool:
    try:
        import anonymeter.evaluators  # noqa: F401
    except ImportError:
        return False
    return True


def anonymeter_risks(X: np.ndarray, y: np.ndarray, X_rel: np.ndarray, y_rel: np.ndarray,
                     X_control: np.ndarray, y_control: np.ndarray, max_attacks: int = 500,
                     seed: int = 0) -> dict[str, float]:
    """Linkability and inference risks (with 95% CIs) of ``X_rel`` for the records ``X``,
    against ``X_control`` (held-out records of the same client); NaN where the release is
    not in the original space or too few records are available."""
    import pandas as pd
    from anonymeter.evaluators import InferenceEvaluator, LinkabilityEvaluator

    out = dict.fromkeys(KEYS, math.nan)
    n = min(len(X), len(X_control), int(max_attacks))
    if X_rel.ndim != 2 or X_rel.shape[1] != X.shape[1] or len(X_rel) < 2 or n < MIN_ATTACKS:
        return out
    g = rng(seed, "privacy", "anonymeter")
    # anonymeter draws its targets with pandas' unseeded sample(); handing it exactly n rows
    # (drawn here, seeded) makes its result a function of our seed alone
    targets = np.sort(g.choice(len(X), n, replace=False))
    controls = np.sort(g.choice(len(X_control), n, replace=False))
    cols = [f"e{j}" for j in range(X.shape[1])]

    def frame(A: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
        df = pd.DataFrame(np.asarray(A, np.float64), columns=cols)
        df["label"] = np.asarray(labels, np.int64)
        return df

    ori, syn, con = frame(X[targets], y[targets]), frame(X_rel, y_rel), frame(X_control[controls], y_control[controls])
    half = len(cols) // 2
    link = LinkabilityEvaluator(ori, syn, aux_cols=(cols[:half], cols[half:]), n_attacks=n, n_neighbors=1,
                                control=con).evaluate(n_jobs=1)
    infer = InferenceEvaluator(ori, syn, aux_cols=cols, secret="label", n_attacks=n, control=con).evaluate(n_jobs=1)
    for name, ev in (("linkability", link), ("inference", infer)):
        risk = ev.risk(confidence_level=0.95)
        out[f"anonymeter_{name}"] = float(risk.value)
        out[f"anonymeter_{name}_ci_low"], out[f"anonymeter_{name}_ci_high"] = (float(v) for v in risk.ci)
    out["anonymeter_n_attacks"] = float(n)
    return out
