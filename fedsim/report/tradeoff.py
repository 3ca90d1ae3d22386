"""Privacy-utility trade-off plots of a sweep, with the Pareto front marked.

Each point is one anonymizer configuration (method + parameters): its utility (accuracy or
accuracy loss, server-side, all clients pooled) against a privacy measure averaged over
clients.  A configuration is on the Pareto front when no other one is at least as good on
both axes and strictly better on one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from fedsim.plotting import pyplot, save_figure


def pareto_front(x: Sequence[float], y: Sequence[float], better_x: str, better_y: str) -> np.ndarray:
    """Boolean mask of non-dominated points; ``better_*`` is ``"low"`` or ``"high"``."""
    sx = 1.0 if better_x == "high" else -1.0
    sy = 1.0 if better_y == "high" else -1.0
    px, py = sx * np.asarray(x, float), sy * np.asarray(y, float)
    valid = np.isfinite(px) & np.isfinite(py)
    mask = np.zeros(len(px), dtype=bool)
    for i in np.flatnonzero(valid):
        others = valid.copy()
        others[i] = False
        dominated = np.any(others & (px >= px[i]) & (py >= py[i]) & ((px > px[i]) | (py > py[i])))
        mask[i] = not dominated
    return mask


def plot_tradeoff(
    points: list[dict], x_key: str, y_key: str, path: str | Path, *, x_label: str, y_label: str,
    better_x: str, better_y: str, title: str,
) -> Path | None:
    """Scatter of ``points`` (dicts with ``label``, ``method``, x_key, y_key), front as a line.

    Returns None (and draws nothing) when no point has both values finite.
    """
    plt = pyplot()
    xs = np.array([p.get(x_key, math.nan) for p in points], float)
    ys = np.array([p.get(y_key, math.nan) for p in points], float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.any():
        return None
    front = pareto_front(xs, ys, better_x, better_y)
    methods = sorted({p["method"] for p in points})
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for m_i, method in enumerate(methods):
        sel = np.array([p["method"] == method for p in points]) & ok
        ax.scatter(xs[sel], ys[sel], color=cmap(m_i % cmap.N), label=method, s=36, zorder=3)
    order = np.flatnonzero(front)[np.argsort(xs[front])]
    ax.plot(xs[order], ys[order], color="black", lw=1.2, ls="--", zorder=2, label="Pareto front")
    ax.scatter(xs[front], ys[front], facecolors="none", edgecolors="black", s=110, zorder=4)
    for i in np.flatnonzero(ok):
        ax.annotate(points[i]["label"], (xs[i], ys[i]), fontsize=6.5, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)
