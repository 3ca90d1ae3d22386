"""Deterministic seed derivation: one scenario seed, independent streams per purpose.

Streams are derived with numpy's SeedSequence from the scenario seed and stable string
keys (never Python's salted ``hash``), so every node of a federation derives the same
numbers without talking to the others.
"""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 63-bit seed for the stream named by ``keys`` (e.g. ``("client", 3, "anonymizer")``)."""
    words = [int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF]
    for key in keys:
        words.append(zlib.crc32(str(key).encode("utf-8")))
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def rng(seed: int, *keys: str | int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *keys))
