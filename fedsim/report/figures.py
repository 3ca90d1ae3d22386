"""Matplotlib on the headless Agg backend, and one way to save a figure."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` with the Agg backend (runs without a display, e.g. in Ray workers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120, tight: bool = False) -> Path:
    """Write ``fig`` as PNG (creating the folder) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
    return path
