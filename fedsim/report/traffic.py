"""What crossed the wire, per client: ``results["traffic"]`` as a table and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedsim.plotting import MANY_CLIENTS, client_figure_width, label_clients, pyplot, save_figure


def traffic_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per client: bytes sent, received, and sent per message phase."""
    clients = (results.get("traffic") or {}).get("clients", {})
    rows = []
    for key, c in sorted(clients.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0)):
        by_phase: dict[str, int] = {}
        for m in c["messages"]:
            by_phase[m["phase"]] = by_phase.get(m["phase"], 0) + m["sent_bytes"]
        rows.append([key, c["sent_bytes"], c["received_bytes"],
                     ", ".join(f"{p} {b / 1e6:.2f} MB" for p, b in sorted(by_phase.items()))])
    return rows


def plot_traffic(results: dict[str, Any], path: Path) -> Path | None:
    """Megabytes each client sent (stacked by phase) and received."""
    clients = (results.get("traffic") or {}).get("clients", {})
    if not clients:
        return None
    names = sorted(clients, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0))
    phases = sorted({m["phase"] for c in clients.values() for m in c["messages"]})
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(client_figure_width(len(names), 0.5, 3), 4))
    x = np.arange(len(names))
    sent = [np.array([sum(m["sent_bytes"] for m in clients[n]["messages"] if m["phase"] == phase)
                      for n in names]) / 1e6 for phase in phases]
    received = np.array([clients[n]["received_bytes"] for n in names]) / 1e6
    if len(names) > MANY_CLIENTS:  # areas and a line: one bar per client does not scale
        ax.stackplot(x, sent, labels=[f"sent: {p}" for p in phases], step="mid")
        ax.step(x, received, where="mid", color="0.3", label="received (all)")
    else:
        bottom = np.zeros(len(names))
        for phase, values in zip(phases, sent):
            ax.bar(x - 0.2, values, 0.4, bottom=bottom, label=f"sent: {phase}")
            bottom += values
        ax.bar(x + 0.2, received, 0.4, color="0.6", label="received (all)")
    label_clients(ax, names, "client (partition id)")
    ax.set_ylabel("traffic (MB)")
    ax.set_title("Bytes each client sent to and received from the server")
    ax.legend(fontsize=8)
    return save_figure(fig, path, tight=True)
