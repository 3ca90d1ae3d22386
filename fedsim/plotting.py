"""Headless matplotlib, one way to save a figure, and the embedding figures.

Kept below every layer that draws (extractor training and evaluation, the driver's run
plots, the report) so that none of them imports another to plot.  The projection is fitted
ONCE on all panels so they share axes (the original study fitted each apart), and the kNN
figure shows the images as stored (no de-normalisation guesswork).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` with the Agg backend (runs without a display, e.g. in Ray workers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: str | Path, dpi: int = 120, tight: bool = False) -> Path:
    """Write ``fig`` as PNG (creating the folder) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
    return path


#: beyond this many clients, per-client figures draw areas instead of one bar per client
#: and label a few clients on the axis (a bar and a tick per client for 1,000 clients took
#: most of a run's reporting time and gave an unreadable, 450-inch-wide figure)
MANY_CLIENTS = 40


def client_figure_width(n: int, per_client: float = 0.45, base: float = 4.0) -> float:
    """Figure width in inches for ``n`` clients side by side: grows with n, capped."""
    return min(max(5.0, per_client * n + base), 16.0)


def label_clients(ax: Any, ids: Sequence[Any], label: str = "client") -> None:
    """Client ids on the x axis: every one when few, about ten at round positions when many."""
    n = len(ids)
    if n <= MANY_CLIENTS:
        at = list(range(n))
    else:
        from matplotlib.ticker import MaxNLocator

        at = [int(t) for t in MaxNLocator(nbins=10, integer=True).tick_values(0, n - 1) if 0 <= t <= n - 1]
    ax.set_xticks(at, [str(ids[i]) for i in at], fontsize=8 if n <= 30 else 7)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel(label)


def project_2d(X: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-D coordinates of ``X``: PCA, or t-SNE on the top-50 PCA components (standard practice)."""
    from sklearn.decomposition import PCA

    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be tsne or pca, got {method!r}")
    X = np.asarray(X, dtype=np.float32)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(X)
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=min(50, X.shape[1], X.shape[0]), random_state=seed).fit_transform(X)
    perplexity = float(min(30, max(5, (len(X) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)


def _palette(n: int) -> list[Any]:
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "gist_ncar")
    return [cmap(i / max(1, n - 1)) if n > 20 else cmap(i) for i in range(n)]


def plot_embeddings(
    panels: dict[str, tuple[np.ndarray, np.ndarray]], classes: Sequence[str], path: str | Path,
    method: str = "tsne", max_points: int = 2000, seed: int = 0, title: str = "",
) -> Path:
    """One shared projection of every panel's points (e.g. train and test), coloured by class.

    ``panels`` maps a panel title to (embeddings, labels); at most ``max_points`` per panel
    are drawn (a seeded class-agnostic sample).
    """
    plt = pyplot()
    rng = np.random.default_rng(seed)
    chunks, sizes, labels = [], [], []
    for X, y in panels.values():
        take = rng.choice(len(X), size=min(max_points, len(X)), replace=False) if len(X) > max_points else np.arange(len(X))
        chunks.append(np.asarray(X)[take])
        labels.append(np.asarray(y)[take])
        sizes.append(len(take))
    coords = project_2d(np.concatenate(chunks), method, seed)
    colors = _palette(len(classes))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), sharex=True, sharey=True, squeeze=False)
    start = 0
    for ax, name, n, y in zip(axes[0], panels, sizes, labels):
        c = coords[start : start + n]
        start += n
        for k, cls in enumerate(classes):
            m = y == k
            if m.any():
                ax.scatter(c[m, 0], c[m, 1], s=4, color=colors[k], label=cls, alpha=0.7, linewidths=0)
        ax.set_title(f"{name} ({n} points)")
        ax.set_xlabel(f"{method.upper()} 1")
        ax.set_ylabel(f"{method.upper()} 2")
    if len(classes) <= 20:
        axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=4, fontsize=8, title="class")
    fig.suptitle(title or f"Embeddings ({method.upper()}, one projection fitted on all panels)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110, tight=True)


def plot_knn_samples(
    query_images: Sequence[np.ndarray], query_labels: Sequence[int],
    neighbor_images: Sequence[Sequence[np.ndarray]], neighbor_labels: np.ndarray, distances: np.ndarray,
    predictions: Sequence[int], classes: Sequence[str], path: str | Path, metric: str = "cosine",
) -> Path:
    """Rows of (query image, its k nearest training images) with labels and distances.

    Images are HxWx3 uint8 arrays as stored in the dataset.  Query titles are green when
    the kNN prediction is right, red when wrong.
    """
    plt = pyplot()
    n, k = len(query_images), len(neighbor_images[0])
    fig, axes = plt.subplots(n, k + 1, figsize=(1.6 * (k + 1), 1.75 * n), squeeze=False)
    for i in range(n):
        ok = predictions[i] == query_labels[i]
        ax = axes[i][0]
        ax.imshow(query_images[i])
        ax.set_title(f"pred {classes[predictions[i]]}\n(true {classes[query_labels[i]]})", fontsize=7,
                     color="green" if ok else "red")
        for j in range(k):
            ax = axes[i][j + 1]
            ax.imshow(neighbor_images[i][j])
            same = neighbor_labels[i][j] == query_labels[i]
            ax.set_title(f"{classes[neighbor_labels[i][j]]}\nd={distances[i][j]:.3f}", fontsize=7,
                         color="black" if same else "darkorange")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].set_ylabel("query", fontsize=8)
    fig.suptitle(f"Queries (left) and their {k} nearest training images ({metric} distance)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
