"""Privacy attacks x anonymization methods on the shipped cifar10-mini embeddings.

For each method: what fedsim reports (``fedsim.privacy.assess`` with the server's profile,
as ``fedsim.clients.release.anonymize`` builds it), every linkage attack of the menu with
its Wilson 95% interval, and, as an independent check, a one-to-one likelihood
assignment computed here with scipy alone (standardised L1 for laplace, squared L2 for
gaussian/dp_gaussian, over all records, no known pair). Also the cases of issue 12 with
few known pairs (permutation and random projections with 4/16 pairs) and the raw k-dim
pca release with none.

    .venv/bin/python benchmarks/attack_table.py [--client 0] [--seed 0]

Needs the embedding cache (the quickstart extracts it once). Exits non-zero when an
acceptance check fails: laplace/gaussian at noise_scale 2.0 within 0.02 of the
independent assignment, pca >= 0.99 with zero known pairs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from fedsim import anonymizers
from fedsim.clients.release import client_data
from fedsim.config import load_scenario
from fedsim.privacy import assess, profile_for

METHODS = [
    ("laplace 0.5", "laplace", {"noise_scale": 0.5, "relative": True}),
    ("laplace 2.0", "laplace", {"noise_scale": 2.0, "relative": True}),
    ("gaussian 0.5", "gaussian", {"noise_scale": 0.5, "relative": True}),
    ("gaussian 2.0", "gaussian", {"noise_scale": 2.0, "relative": True}),
    ("dp_gaussian eps 8", "dp_gaussian", {"epsilon": 8.0}),
    ("permutation", "permutation", {}),
    ("random_projection 64", "random_projection", {"n_components": 64}),
    ("pca 16", "pca", {"n_components": 16}),
    ("kmeans 50", "kmeans", {"n_clusters": 50}),
    ("mdav 5", "mdav", {"k": 5}),
]
#: (label, method, params, profile overrides, release as the server sees it?)
VARIANTS = [
    ("pca 16 raw, 0 pairs", "pca", {"n_components": 16}, {"n_aux": 0}, False),
    ("pca 16 mapped back, 0 pairs", "pca", {"n_components": 16}, {"n_aux": 0}, True),
    ("permutation, 4 pairs", "permutation", {}, {"n_aux": 4}, True),
    ("random_projection 64, 4 pairs", "random_projection", {"n_components": 64}, {"n_aux": 4}, True),
    ("random_projection 64, 16 pairs", "random_projection", {"n_components": 64}, {"n_aux": 16}, True),
]


def independent_assignment(X: np.ndarray, R: np.ndarray, anon) -> float:
    """One-to-one likelihood assignment over all records with scipy only (no fedsim code)."""
    if anon.name == "dp_gaussian":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = X * np.minimum(1.0, anon.clip_norm / norms)
        scale, metric, power = anon.sigma_, "euclidean", 2
    else:
        scale, metric, power = anon.scale_, "cityblock" if anon.name == "laplace" else "euclidean", \
            1 if anon.name == "laplace" else 2
    cost = cdist(R / scale, X / scale, metric) ** power
    _, col = linear_sum_assignment(cost)
    return float((col == np.arange(len(X))).mean())


def fmt(v: float, lo: float, hi: float) -> str:
    return "-" if math.isnan(v) else f"{v:.3f} [{lo:.3f},{hi:.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    scenario = load_scenario("scenarios/quickstart.toml")
    clients = [client_data(scenario, p, 4, progress=False) for p in range(4)]
    data = clients[args.client]
    X, y, Q = data.x_train, data.y_train, data.x_query
    print(f"client {args.client}: {X.shape[0]} records x {X.shape[1]} dims, {Q.shape[0]} control queries")

    def release(method: str, params: dict):
        anon = anonymizers.create(method, seed=args.seed + 1, key=12345, **params)
        if anon.needs_shared_state:  # the federated basis, pooled over the four clients
            anon.set_shared_state(anonymizers.combine_shared_state(
                method, params, [anonymizers.create(method, **params).shared_statistics(c.x_train) for c in clients]))
        anon.fit(X, y)
        return anon, *anon.release(X, y)

    failures, detail = [], []
    header = (f"{'method':<32} {'reidentification (95% CI)':<27} {'winner':<34} {'member':>6} "
              f"{'mia_auc (95% CI)':<24} {'n':>9} {'inv_cos':>7} {'member':>7} {'indep.':>6} {'s':>5}")
    print(header)
    print("-" * len(header))
    runs = [(label, m, p, {}, True) for label, m, p in METHODS] + VARIANTS
    t_all = time.perf_counter()
    for label, method, params, overrides, mapped in runs:
        anon, R, y_rel = release(method, params)
        seen = anon.invert(R) if mapped and anon.inverted_with == "public" else R
        t0 = time.perf_counter()
        a = assess(X, y, seen, y_rel, groups=anon.groups_, X_control=Q, seed=args.seed, max_samples=5000,
                   profile=profile_for(anon, aux_fraction=0.1, **overrides))
        took = time.perf_counter() - t0
        m = a.metrics
        winner = next((o.name for o in a.linkage if o.code == m["reidentification_attack"]), "-")
        indep = independent_assignment(X.astype(np.float64), R.astype(np.float64), anon) \
            if method in ("laplace", "gaussian", "dp_gaussian") else math.nan
        reid = fmt(m["reidentification_rate"], m["reidentification_rate_ci_low"], m["reidentification_rate_ci_high"])
        print(f"{label:<32} {reid:<27} {winner:<38} {m['reidentification_rate_member']:>6.3f} "
              f"{fmt(m['mia_auc'], m['mia_auc_ci_low'], m['mia_auc_ci_high']):<24} "
              f"{m['mia_auc_n_members']:>4.0f}/{m['mia_auc_n_nonmembers']:<4.0f} {m['inversion_cosine']:>7.3f} "
              f"{m['inversion_cosine_member']:>7.3f} {indep:>6.3f} {took:>5.1f}")
        detail.append((label, a))
        if label in ("laplace 2.0", "gaussian 2.0") and abs(m["reidentification_rate"] - indep) > 0.02:
            failures.append(f"{label}: fedsim {m['reidentification_rate']:.3f} vs independent assignment {indep:.3f}")
        if method == "pca" and overrides.get("n_aux") == 0 and mapped and m["reidentification_rate"] < 0.99:
            failures.append(f"{label}: {m['reidentification_rate']:.3f} < 0.99")
    print(f"\ntotal {time.perf_counter() - t_all:.1f} s\n")
    print(f"{'method':<32} {'family':<17} {'attack':<42} {'view':<26} {'value':>6} {'95% CI':<15} {'n':>5}")
    for label, a in detail:
        for row in a.table():
            print(f"{label:<32} {row['family']:<17} {row['attack']:<42} {row['view']:<26} {row['value']:>6.3f} "
                  f"[{row['ci_low']:.3f},{row['ci_high']:.3f}] {row['n']:>5}")
    for f in failures:
        print("ACCEPTANCE FAILED:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
