"""What the emulated attacker knows besides the release: a documented, configurable profile.

The privacy figures are only as meaningful as the attacker they assume. fedsim's default is
the server of the threat model (README "Threat model") at full strength under Kerckhoffs'
principle: it knows the anonymization method and its public parameters (they are in the
scenario), the labels travel in clear, and a reference population from the same
distribution is available to it.

===============  ===========  ==============================================================
field            default      meaning
===============  ===========  ==============================================================
method           "unknown"    the anonymizer's name: selects the pair-free attacks that fit
                              it (``SPECIALISED``); "unknown" runs every one the shapes allow
                              for linkage, and none for membership and inversion
noise            None         the additive mechanism: ``{"kind": "gaussian" | "laplace" |
                              "uniform", "scale": float or (d,) array, "clip_norm": float
                              (optional; dp_gaussian clips before adding noise)}``
aux_fraction     0.1          fraction of the (original, released) pairs the attacker knows
n_aux            None         exact number of known pairs (overrides ``aux_fraction``)
reference        True         holds a reference population (half of ``X_control``): it
                              calibrates membership scores and fits the pair-free views
                              used by membership inference and inversion
labels           True         uses the released labels (in clear in every fedsim method):
                              links within the released label (``linkage`` rules 2 and 4)
                              and measures the baseline within it
===============  ===========  ==============================================================

``profile_for(anonymizer)`` builds the profile of a fitted fedsim anonymizer from its name
and public parameters (the per-feature noise scale ``scale_`` of ``random``/``laplace``/
``gaussian``, ``sigma_`` and ``clip_norm`` of ``dp_gaussian``, ``noise_scale`` of
``kmeans`` (Laplace) and ``density_based`` (Gaussian)).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsim.privacy.attacks.noise import COST

#: pair-free attack spaces that fit each method (``linkage`` space names)
SPECIALISED = {
    "permutation": ("quantile-columns",),
    "pca": ("subspace", "self-pca"),
    "random_projection": ("subspace",),
}
ALL_PAIR_FREE = ("quantile-columns", "subspace", "self-pca")
#: fedsim's additive-noise methods and their noise kind
NOISE_KIND = {"random": "uniform", "laplace": "laplace", "gaussian": "gaussian", "dp_gaussian": "gaussian",
              "kmeans": "laplace", "density_based": "gaussian"}


@dataclass(frozen=True, eq=False)
class AttackerProfile:
    """The attacker's knowledge (see the module table)."""

    method: str = "unknown"
    noise: dict[str, Any] | None = None
    aux_fraction: float = 0.1
    n_aux: int | None = None
    reference: bool = True
    labels: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.aux_fraction < 1.0:
            raise ValueError(f"aux_fraction must be in [0, 1), got {self.aux_fraction}")
        if self.n_aux is not None and int(self.n_aux) < 0:
            raise ValueError(f"n_aux must be >= 0, got {self.n_aux}")
        if self.noise is not None:
            kind = self.noise.get("kind")
            if kind not in COST:
                raise ValueError(f"noise kind must be one of {', '.join(COST)}, got {kind!r}")
            scale = np.asarray(self.noise.get("scale"), dtype=np.float64)
            if scale.ndim > 1 or scale.size == 0 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
                raise ValueError("noise scale must be a positive number or a 1-D array of them")

    def replace(self, **changes: Any) -> "AttackerProfile":
        return dataclasses.replace(self, **changes)

    def pair_free(self, everything_if_unknown: bool) -> tuple[str, ...]:
        """The pair-free spaces this attacker tries (shape permitting)."""
        if self.method == "unknown":
            return ALL_PAIR_FREE if everything_if_unknown else ()
        return SPECIALISED.get(self.method, ())


def profile_for(anonymizer: Any, aux_fraction: float = 0.1, **overrides: Any) -> AttackerProfile:
    """The server's profile against a fitted fedsim anonymizer: its name and public
    parameters (Kerckhoffs), ``aux_fraction`` known pairs; ``overrides`` set other fields."""
    name = getattr(anonymizer, "name", "unknown")
    noise = None
    if name in ("random", "laplace", "gaussian"):
        noise = {"kind": NOISE_KIND[name], "scale": np.asarray(anonymizer.scale_, dtype=np.float64)}
    elif name == "dp_gaussian":
        noise = {"kind": "gaussian", "scale": float(anonymizer.sigma_), "clip_norm": float(anonymizer.clip_norm)}
    elif name in ("kmeans", "density_based") and getattr(anonymizer, "noise_scale", None):
        noise = {"kind": NOISE_KIND[name], "scale": float(anonymizer.noise_scale)}
    return AttackerProfile(method=name, noise=noise, aux_fraction=aux_fraction, **overrides)
