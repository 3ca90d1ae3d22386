"""The short table the CLI prints after a run."""

from __future__ import annotations

from typing import Any


def format_summary(results: dict[str, Any]) -> str:
    names = list(results["accuracy"])
    header = f"{'client':>8} {'n_train':>8} {'n_query':>8} " + " ".join(f"{n:>10}" for n in names)
    lines = [header, "-" * len(header)]
    n_train = n_query = 0
    for c in sorted(results["clients"], key=lambda c: (c["id"] is None, c["id"] or 0)):
        if c["status"] != "ok":
            lines.append(f"{str(c['id']):>8} FAILED: {c['error'].splitlines()[0] if c['error'] else ''}")
            continue
        n_train += c["n_train"]
        n_query += c["n_query"]
        accs = " ".join(f"{c['accuracy'].get(n, float('nan')):>10.4f}" for n in names)
        lines.append(f"{c['id']:>8} {c['n_train']:>8} {c['n_query']:>8} {accs}")
    lines.append("-" * len(header))
    glob = " ".join(f"{(results['accuracy'][n] if results['accuracy'][n] is not None else float('nan')):>10.4f}" for n in names)
    lines.append(f"{'global':>8} {n_train:>8} {n_query:>8} {glob}")
    return "\n".join(lines)
