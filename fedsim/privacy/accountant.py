"""(epsilon, delta) of Gaussian mechanisms composed over repeated releases and rounds.

A record released k times through Gaussian mechanisms with noise multipliers z_1..z_k
(noise standard deviation over L2 sensitivity) is (epsilon, delta)-DP for the epsilon this
module returns.  The composition is Google's ``dp-accounting`` privacy-loss-distribution
accountant, which is tight for the Gaussian mechanism (one release gives back the epsilon
``dp_gaussian`` was calibrated for, to the accountant's discretisation) -- not a bound
written here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import dp_accounting
from dp_accounting.pld import PLDAccountant

#: the PLD accountant's discretisation of the privacy loss (its default is 1e-4)
VALUE_DISCRETIZATION = 1e-4


def composed_epsilon(noise_multipliers: Sequence[float], delta: float) -> float:
    """Epsilon at ``delta`` of one record released once through each of these Gaussian
    mechanisms; 0 for none, inf when any multiplier is 0 (no noise)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not noise_multipliers:
        return 0.0
    if min(noise_multipliers) <= 0:
        return math.inf
    counts: dict[float, int] = {}
    for z in noise_multipliers:
        counts[float(z)] = counts.get(float(z), 0) + 1
    return _pld_epsilon(tuple(sorted(counts.items())), delta)


@functools.lru_cache(maxsize=1024)
def _pld_epsilon(composition: tuple[tuple[float, int], ...], delta: float) -> float:
    """One PLD computation takes ~0.1 s, and every client of a run asks for the same few
    compositions (same mechanism, same number of releases): computed once each."""
    event = dp_accounting.ComposedDpEvent([dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), k)
                                           for z, k in composition])
    accountant = PLDAccountant(value_discretization_interval=VALUE_DISCRETIZATION)
    return float(accountant.compose(event).get_epsilon(delta))
