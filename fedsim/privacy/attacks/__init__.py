"""Attacks at the strength of the best known attacker, one small module each.

=================  ==========================================================================
module             attack
=================  ==========================================================================
``noise``          likelihood-matched comparison for a known noise mechanism (standardised
                   L2² / L1 / L∞, clipping for dp_gaussian)
``assignment``     one-to-one minimum-cost assignment (per-record releases are a bijection),
                   per label block, dense or sparse
``quantiles``      column matching by quantile profiles against a population (permutations)
``subspace``       the release's own affine span (pca mapped back) and self-computed PCA (raw
                   pca release), both without known pairs
``bootstrap``      self-training: refit a forward map on the attacker's own confident links
=================  ==========================================================================

The maps fitted on known pairs (identity, Procrustes, semi-orthogonal Procrustes, column
matching, ridge, least squares) live in ``fedsim.privacy.alignment``; membership inference
by distance to the closest record in ``fedsim.privacy.membership``. Every view (a space in
which released rows and originals are compared) belongs to one of the ``SPACES`` below;
the codes name the winning attack in the results (``fedsim.privacy``).
"""

from __future__ import annotations

#: comparison spaces and their codes (tens digit of ``*_attack``)
SPACES = {1: "aligned", 2: "likelihood", 3: "quantile-columns", 4: "subspace", 5: "self-pca", 6: "self-training"}
_BY_NAME = {name: code for code, name in SPACES.items()}


def space_of(view) -> int:
    """Space code of a view: its map's name for the pair-free ones, else 1 (aligned)."""
    name = getattr(getattr(view, "map", view), "name", "")
    return _BY_NAME.get(name, 1)
