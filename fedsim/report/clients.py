"""Clients side by side: the data partition and each client's privacy and utility.

Partition skew changes both what a client gains from the federation and what it risks: a
client with few classes is easier to re-identify and its accuracy depends more on others.
Every metric gets a table and a client x configuration heatmap, and every client's label
entropy (bits; log2(classes) = perfectly balanced) is shown next to it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fedsim.plotting import MANY_CLIENTS, client_figure_width, label_clients, pyplot, save_figure

#: metrics compared across clients (key in results.json, label with direction)
CLIENT_METRICS = [
    ("accuracy", "accuracy on own queries (higher = more useful)"),
    ("accuracy_loss", "accuracy loss vs none (lower = more useful)"),
    ("reidentification_rate", "re-identification rate (lower = more private)"),
    ("mia_auc", "membership-inference AUC (0.5 = private)"),
    ("inversion_cosine", "inversion cosine similarity (lower = more private)"),
    ("near_overlap", "near overlap (lower = more private)"),
    ("reconstruction_error", "reconstruction error (higher = more private)"),
]


def label_entropy(hist: list[int]) -> float:
    p = np.asarray(hist, dtype=float)
    p = p[p > 0] / p.sum() if p.sum() else p[:0]
    return float(-(p * np.log2(p)).sum()) if len(p) else math.nan


def client_value(client: dict[str, Any], key: str, classifier: str) -> float:
    if key in ("accuracy", "accuracy_loss"):
        v = client[key].get(classifier)
    else:
        v = client["metrics"].get(key)
    return math.nan if v is None else float(v)


def plot_partition(results: dict[str, Any], path: Path) -> Path | None:
    """Training labels per client as stacked bars (one colour per class); stacked areas
    when there are many clients."""
    clients = [c for c in results["clients"] if c.get("status") == "ok"]
    if not clients:
        return None
    plt = pyplot()
    hist = np.array([c["label_histogram"] for c in clients])
    n_cls = hist.shape[1]
    fig, ax = plt.subplots(figsize=(client_figure_width(len(clients), 0.5, 3), 3.8))
    cmap = plt.get_cmap("tab10" if n_cls <= 10 else "tab20" if n_cls <= 20 else "viridis")
    colors = [cmap(k) if n_cls <= 20 else cmap(k / max(1, n_cls - 1)) for k in range(n_cls)]
    labels = [str(k) if n_cls <= 20 else None for k in range(n_cls)]
    x = np.arange(len(clients))
    if len(clients) > MANY_CLIENTS:
        ax.stackplot(x, hist.T, colors=colors, labels=labels, step="mid")
    else:
        bottom = np.zeros(len(clients))
        for k in range(n_cls):
            ax.bar(x, hist[:, k], bottom=bottom, color=colors[k], label=labels[k])
            bottom += hist[:, k]
    label_clients(ax, [c["id"] for c in clients])
    ax.set_ylabel("training records")
    ax.set_title(f"data partition: {results.get('partition', '?')}, {len(clients)} clients")
    if n_cls <= 20:
        ax.legend(title="class", fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return save_figure(fig, path)


def client_table(results: dict[str, Any], classifier: str) -> tuple[list[str], list[list[Any]]]:
    """Rows of (configuration, client, label entropy, metric...) for every release."""
    entropy = {c["id"]: label_entropy(c["label_histogram"]) for c in results["clients"] if c.get("status") == "ok"}
    keys = [k for k, _ in CLIENT_METRICS if _present(results, k, classifier)]
    header = ["configuration", "client", "label entropy (bits)"] + keys
    rows = []
    for rel in results.get("releases", []):
        for c in rel["clients"]:
            rows.append([rel["label"], c["id"], entropy.get(c["id"], math.nan)]
                        + [client_value(c, k, classifier) for k in keys])
    return header, rows


def _present(results: dict[str, Any], key: str, classifier: str) -> bool:
    return any(math.isfinite(client_value(c, key, classifier))
               for rel in results.get("releases", []) for c in rel["clients"])


def plot_client_metric(results: dict[str, Any], key: str, title: str, classifier: str, path: Path) -> Path | None:
    """Heatmap: configurations (rows) x clients (columns) of one metric."""
    releases = results.get("releases", [])
    if not releases or not _present(results, key, classifier):
        return None
    ids = sorted({c["id"] for rel in releases for c in rel["clients"]})
    M = np.full((len(releases), len(ids)), np.nan)
    for i, rel in enumerate(releases):
        for c in rel["clients"]:
            M[i, ids.index(c["id"])] = client_value(c, key, classifier)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(client_figure_width(len(ids)), max(2.5, 0.35 * len(releases) + 1.5)))
    im = ax.imshow(M, aspect="auto", cmap="viridis", interpolation="nearest")
    label_clients(ax, ids)
    ax.set_yticks(range(len(releases)), [r["label"] for r in releases], fontsize=7)
    if len(ids) * len(releases) <= 200:
        finite = M[np.isfinite(M)]
        mid = (finite.min() + finite.max()) / 2 if len(finite) else 0
        for i in range(M.shape[0]):
            for j in range(M.shape[1]):
                if np.isfinite(M[i, j]):
                    ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if M[i, j] < mid else "black")
    fig.colorbar(im, ax=ax, label=key)
    suffix = f" ({classifier})" if key in ("accuracy", "accuracy_loss") else ""
    ax.set_title(title + suffix, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def write_client_plots(run_dir: Path, results: dict[str, Any]) -> list[Path]:
    clf = next(iter(results.get("accuracy") or {"knn": 0}))
    paths = [plot_partition(results, Path(run_dir) / "partition.png")]
    for key, title in CLIENT_METRICS:
        paths.append(plot_client_metric(results, key, title, clf, Path(run_dir) / f"clients_{key}.png"))
    return [p for p in paths if p is not None]
