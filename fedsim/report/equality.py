"""The deterministic part of a results.json, to check that two engines computed the same run.

The same scenario, seed and federation key give the same numbers on Flower's simulation
engine (``fedsim run``) and on its deployment engine (``fedsim deploy local``, ``flwr
run``): every accuracy, privacy metric, partition and failure.  What legitimately differs
is left out of the comparison:

* ``timings`` (anywhere) -- wall-clock measurements;
* ``engine`` -- which engine ran it;
* ``embedding_cache`` -- whether a client found its embeddings in its cache;
* ``sent_bytes`` / ``total_sent_bytes`` in ``traffic`` -- a client's reply carries its
  timings and its cache state, so its size varies by a few bytes from run to run (what
  the server sends, ``received_bytes``, and the message counts are compared).
"""

from __future__ import annotations

import math
from typing import Any

VOLATILE = frozenset({"timings", "engine", "embedding_cache", "sent_bytes", "total_sent_bytes"})


def deterministic(results: Any) -> Any:
    """``results`` without the volatile keys (at any depth)."""
    if isinstance(results, dict):
        return {k: deterministic(v) for k, v in results.items() if k not in VOLATILE}
    if isinstance(results, list):
        return [deterministic(v) for v in results]
    return results


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def differences(a: dict[str, Any], b: dict[str, Any], limit: int = 50) -> list[str]:
    """Where the deterministic parts of two results differ: one line per path (exact equality;
    NaN equals NaN), at most ``limit`` lines."""
    found: list[str] = []

    def walk(x: Any, y: Any, path: str) -> None:
        if len(found) >= limit:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                if k not in x or k not in y:
                    found.append(f"{path}.{k}: only in the {'first' if k in x else 'second'}")
                else:
                    walk(x[k], y[k], f"{path}.{k}")
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                found.append(f"{path}: {len(x)} vs {len(y)} entries")
                return
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{path}[{i}]")
        elif not _same(x, y):
            found.append(f"{path}: {x!r} vs {y!r}")

    walk(deterministic(a), deterministic(b), "results")
    return found
