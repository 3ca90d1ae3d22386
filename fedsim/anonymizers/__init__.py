"""Anonymizers: what a client shares instead of its embeddings.

Contract (scikit-learn style, numpy in and out, torch inside on the best device)::

    anon = create("gaussian", noise_scale=0.1, seed=3, key=7)  # parameters validated here
    anon.check_data(n_samples, n_features)   # data-dependent checks, without the data
    anon.fit(X, y)                           # learn from the client's own data
    X_rel, y_rel = anon.release(X, y)        # the training release sent to the server
    Q_rel = anon.transform_queries(Q)        # how query embeddings are shared for scoring
    anon.groups_, anon.release_info_         # originals behind each row; facts about the release

``seed`` is the client's private randomness; ``key`` the federation's shared secret (the
same on every client, never sent to the server) from which keyed transforms are drawn.
``groups_`` is None when released row i comes from original row i, else one index array
per released row (empty: synthetic).  Parameter names follow the original study.

==================  ==============================================  ==================================  ====================================
method              parameters                                      protects against                    does NOT protect against
==================  ==============================================  ==================================  ====================================
none                -                                               nothing (utility reference)         anything
permutation         (key)                                           reading features by position        a few known pairs; key holders
random              noise_scale, relative                           exact matching (uniform noise)      NN linkage at small scale
laplace             noise_scale, relative                           exact matching (Laplace noise)      NN linkage at small scale
gaussian            noise_scale, relative                           exact matching (Gaussian noise)     NN linkage at small scale
dp_gaussian         epsilon, delta, clip_norm                       any attack on one vector,           label disclosure (labels in clear)
                                                                    (eps, delta)-DP per record
random_projection   n_components, kind (key)                        direct reading of coordinates       n_components known pairs; key holders
pca                 n_components (shared basis)                     direct reading; discarded variance  basis holders; known pairs
kmeans              n_clusters, assign_labels, noise_scale,         single-record disclosure            small clusters; k-1 known members
                    n_iter, init
density_based       max_dist, min_samples, noise_scale,             single-record disclosure;           small clusters; queries (noise only)
                    noise_policy, radius_quantile, radius_k         outliers never released unchanged
mdav                k                                               linkage to fewer than k records     k-1 known members; not DP
gan                 n_epochs, batch_size, latent_dim, lr,           per-record computation              memorisation; queries (unchanged)
                    n_samples, sample_labels
==================  ==============================================  ==================================  ====================================

Queries: per-record methods transform queries the same way (fresh noise / same keyed
map); aggregating and synthesizing methods pass them through their per-record part
(unchanged, or noise of the method's type for noisy kmeans / density_based).  Heavy
methods also take ``device`` ("auto", "cpu", "cuda").
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from fedsim.anonymizers.base import Anonymizer, Identity
from fedsim.anonymizers.clustering import DensityBased, KMeansAnonymizer
from fedsim.anonymizers.gan import GAN
from fedsim.anonymizers.keyed import PCAAnonymizer, Permutation, RandomProjection
from fedsim.anonymizers.mdav import MDAV
from fedsim.anonymizers.noise import (DPGaussian, GaussianNoise, LaplaceNoise, UniformNoise,
                                      analytic_gaussian_sigma, classical_gaussian_sigma)
from fedsim.registry import Registry

REGISTRY: Registry[Anonymizer] = Registry("anonymizer")
for _cls in (Identity, Permutation, UniformNoise, LaplaceNoise, GaussianNoise, DPGaussian,
             RandomProjection, PCAAnonymizer, KMeansAnonymizer, DensityBased, MDAV, GAN):
    REGISTRY.register(_cls.name)(_cls)


def _check_required(name: str, params: dict[str, Any]) -> None:
    sig = inspect.signature(REGISTRY.get(name))
    missing = [p for p, spec in sig.parameters.items()
               if spec.default is inspect.Parameter.empty and p not in params
               and spec.kind in (spec.POSITIONAL_OR_KEYWORD, spec.KEYWORD_ONLY)]
    if missing:
        raise ValueError(f"anonymizer {name!r} needs parameter {missing[0]!r}")


#: parameters a scenario may not set: fedsim derives them (why, for the error message)
NOT_USER_SET = {
    "seed": "each client's noise seed is derived from the scenario's top-level seed",
    "key": "the key is the federation's client-side secret, never part of a scenario",
}


def create(name: str, seed: int = 0, key: int = 0, **params: Any) -> Anonymizer:
    """Build (and thereby validate) an anonymizer by name."""
    REGISTRY.check_parameters(name, params)  # unknown name or parameter: ValueError listing the allowed
    _check_required(name, params)
    return REGISTRY.create(name, seed=seed, key=key, **params)


def validate(name: str, params: dict[str, Any]) -> None:
    """Check a scenario's parameters for ``name``: ``seed`` and ``key`` are not the user's."""
    for param, why in NOT_USER_SET.items():
        if param in params:
            raise ValueError(f"parameter {param!r} cannot be set in a scenario: {why}")
    create(name, **params)


def needs_shared_state(name: str) -> bool:
    """True when every client must send statistics first (a shared basis: ``pca``)."""
    return bool(REGISTRY.get(name).needs_shared_state)


def combine_shared_state(name: str, params: dict[str, Any], stats: list[dict[str, np.ndarray]]
                         ) -> dict[str, np.ndarray]:
    """Combine the clients' ``shared_statistics`` into the state every client then sets with
    ``set_shared_state`` (for ``pca``: the pooled mean and basis)."""
    params = {k: v for k, v in params.items() if k not in ("seed", "key")}
    return REGISTRY.get(name).combine_shared_state(stats, **params)


__all__ = ["Anonymizer", "REGISTRY", "create", "validate", "needs_shared_state", "combine_shared_state",
           "PCAAnonymizer", "analytic_gaussian_sigma", "classical_gaussian_sigma"]
