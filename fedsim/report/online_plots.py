"""Plots of online continual-learning runs: accuracy per round, the accuracy matrix R as a
heatmap, and average accuracy against the incoming batch size (the study's plot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedsim.labels import label_slug
from fedsim.plotting import pyplot, save_figure


def _colors(names) -> dict[str, Any]:
    """One colour per classifier; its replay twin shares it (drawn dashed)."""
    bases = list(dict.fromkeys(n.removesuffix("+replay") for n in names))
    return {n: f"C{bases.index(n.removesuffix('+replay')) % 10}" for n in names}


def plot_accuracy_per_round(entry: dict[str, Any], path: Path) -> Path:
    """Accuracy on the current round's test domain after each round, per classifier."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rounds = np.arange(1, entry["rounds"] + 1)
    colors = _colors(entry["classifiers"])
    for name, res in entry["classifiers"].items():
        style = "--" if name.endswith("+replay") else "-"
        ax.plot(rounds, 100 * np.asarray(res["accuracy_per_round"]), style, marker="o", ms=3, label=name,
                color=colors[name])
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy on the round's test domain (%)")
    ax.set_title(f"{entry['label']}: {entry['setting']}, {entry['batch_size']} records/client/round")
    ax.set_xticks(rounds)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if entry["setting"] == "domain_shift":
        ax.set_xticks(rounds, [f"{r}: {d}" for r, d in zip(rounds, entry["domains"])], fontsize=7,
                      rotation=35, ha="right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_R(entry: dict[str, Any], path: Path) -> Path:
    """R[i, j] = accuracy after round i on round j's test domain, one panel per classifier."""
    plt = pyplot()
    names = list(entry["classifiers"])
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    T = entry["rounds"]
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
    fig.subplots_adjust(wspace=0.3, hspace=0.45, right=0.85)
    for n, (ax, name) in enumerate(zip(axes.flat, names)):
        R = 100 * np.asarray(entry["classifiers"][name]["R"])
        im = ax.imshow(R, vmin=0, vmax=100, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("test domain of round j", fontsize=8)
        if n % cols == 0:
            ax.set_ylabel("after round i", fontsize=8)
        ticks = np.arange(T)
        ax.set_xticks(ticks, [str(t + 1) for t in ticks], fontsize=6)
        ax.set_yticks(ticks, [str(t + 1) for t in ticks], fontsize=6)
        if T <= 12:
            for i in range(T):
                for j in range(T):
                    ax.text(j, i, f"{R[i, j]:.0f}", ha="center", va="center", fontsize=5,
                            color="white" if R[i, j] < 60 else "black")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.colorbar(im, cax=fig.add_axes([0.88, 0.15, 0.015, 0.7]), label="accuracy (%)")
    fig.suptitle(f"accuracy matrix R: {entry['label']}", fontsize=10)
    return save_figure(fig, path)


def plot_accuracy_vs_batch_size(entries: list[dict[str, Any]], path: Path) -> Path | None:
    """Average accuracy (final model, all domains) against records per client per round."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_method.setdefault(e["label"].split(" [batch")[0], []).append(e)
    if not any(len({e["batch_size"] for e in group}) > 1 for group in by_method.values()):
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, group in by_method.items():
        group = sorted(group, key=lambda e: e["batch_size"])
        sizes = [e["batch_size"] for e in group]
        colors = _colors(group[0]["classifiers"])
        for name in group[0]["classifiers"]:
            acc = [100 * e["classifiers"][name]["metrics"]["average_accuracy"] for e in group]
            prefix = f"{method}: " if len(by_method) > 1 else ""
            ax.plot(sizes, acc, "--" if name.endswith("+replay") else "-", marker="o", label=prefix + name,
                    color=colors[name] if len(by_method) == 1 else None)
    ax.set_xlabel("incoming batch size (records per client per round)")
    ax.set_ylabel("average accuracy after the last round (%)")
    ax.set_title("online learning: average accuracy vs batch size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_online_plots(run_dir: Path, results: dict[str, Any]) -> list[Path]:
    entries = results.get("online") or []
    written = []
    for e in entries:
        slug = label_slug(e["label"])
        written.append(plot_accuracy_per_round(e, Path(run_dir) / f"online_accuracy-{slug}.png"))
        written.append(plot_R(e, Path(run_dir) / f"online_R-{slug}.png"))
    vs = plot_accuracy_vs_batch_size(entries, Path(run_dir) / "online_accuracy_vs_batch_size.png")
    return written + ([vs] if vs else [])
