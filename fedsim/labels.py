"""How a configuration is named in results, logs and plot files.

A pure helper below every layer, so that the server, the driver's plots and the report
name a configuration the same way without importing each other.
"""

from __future__ import annotations

import re
from typing import Any


def config_label(method: str, params: dict[str, Any]) -> str:
    """``gaussian(noise_scale=0.1)``; just the name without parameters."""
    if not params:
        return method
    return f"{method}(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def label_slug(label: str) -> str:
    """``label`` as a safe file-name part (``gaussian_noise_scale=0.1``)."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_")
