"""The privacy accountant's figures (``releases[].dp``): a table and the epsilon plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsim.plotting import pyplot, save_figure


def dp_releases(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in results.get("releases", []) if "dp" in r]


def dp_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per DP configuration: noise multiplier, epsilon alone and composed over the run."""
    return [[r["label"], r["dp"]["noise_multiplier"], r["dp"]["delta"], r["dp"]["epsilon"], r["dp"]["epsilon_run"]]
            for r in dp_releases(results)]


def plot_epsilon(results: dict[str, Any], path: Path) -> Path | None:
    """Epsilon of the most exposed client: per round for online runs and fedavg_head's DP
    configurations, else composed over the run's DP configurations in the order they ran."""
    releases = dp_releases(results)
    if not releases:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    delta = releases[0]["dp"]["delta"]
    online = [r for r in releases if any("epsilon_per_round" in c for c in r["dp"]["clients"].values())]
    if online:
        for r in online:
            per = [c["epsilon_per_round"] for c in r["dp"]["clients"].values()]
            worst = [max(col) for col in zip(*per)]
            ax.plot(range(1, len(worst) + 1), worst, marker="o", label=r["label"])
        for r in (r for r in releases if r not in online):  # one-shot DP releases of the same run
            ax.axhline(r["dp"]["epsilon"], ls="--", lw=1, color="grey", label=f"{r['label']} (one release)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("round (online, or fedavg_head's FedAvg rounds)")
    else:
        x = range(1, len(releases) + 1)
        ax.plot(x, [r["dp"]["epsilon"] for r in releases], marker="o", label="this configuration alone")
        ax.plot(x, [r["dp"]["epsilon_run"] for r in releases], marker="s", label="composed over the run so far")
        ax.set_xticks(list(x), [r["label"] for r in releases], rotation=30, ha="right", fontsize=7)
        ax.set_xlabel("DP configuration, in run order")
    ax.set_ylabel(f"epsilon at delta = {delta:g} (most exposed client)")
    ax.set_title("Differential privacy, accounted (dp-accounting, PLD)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
