"""Every client's training and query indices, computed once per machine and stored.

Computing a split needs Flower Datasets (``fedsim.data.partition``), whose imports
(``datasets``, pyarrow, pandas) cost a process about 200 MB and 1.5 s.  So the first
process that computes a split -- the driver's preflight, in a simulation -- stores it in
the cache folder (``partitions/``), and client processes only read it.  The key holds
everything the split depends on: the labels (and parties), the partitioner with its
parameters, the number of clients, the seed, and the partition code itself (the source
of ``partition.py`` and the flwr-datasets version), so a change of any recomputes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from fedsim import diskcache
from fedsim.data.datasets import LabeledImageDataset

Split = tuple[list[np.ndarray], list[np.ndarray]]


def _digest(a: np.ndarray | None) -> str | None:
    if a is None:
        return None
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()).hexdigest()


def split_key(method: str, params: Mapping[str, Any], train: LabeledImageDataset, test: LabeledImageDataset,
              num_partitions: int, seed: int) -> dict[str, Any]:
    code = (Path(__file__).with_name("partition.py")).read_bytes()
    return {
        "method": method, "params": dict(params), "num_partitions": num_partitions, "seed": seed,
        "train_labels": _digest(train.targets), "test_labels": _digest(test.targets),
        "train_parties": _digest(train.parties), "test_parties": _digest(test.parties),
        "code": hashlib.sha256(code).hexdigest(), "flwr_datasets": version("flwr-datasets"),
    }


def _save(folder: Path, split: Split) -> None:
    parts, queries = split
    np.savez(folder / "split.npz", train=np.concatenate(parts), train_sizes=[len(p) for p in parts],
             query=np.concatenate(queries), query_sizes=[len(q) for q in queries])


def _load(folder: Path) -> Split:
    with np.load(folder / "split.npz") as npz:
        return tuple(np.split(npz[name], np.cumsum(npz[f"{name}_sizes"])[:-1]) for name in ("train", "query"))


def client_splits(method: str, params: Mapping[str, Any], train: LabeledImageDataset, test: LabeledImageDataset,
                  num_partitions: int, seed: int) -> Split:
    """(training indices, query indices) of every client: stored, or computed and stored."""
    key = split_key(method, params, train, test, num_partitions, seed)
    stored = diskcache.find("partitions", key)
    if stored is not None:
        return _load(stored)
    from fedsim.data.partition import split_for_clients  # Flower Datasets: only when computing

    split = split_for_clients(method, params, train.targets, test.targets, num_partitions, seed,
                              train.parties, test.parties)
    diskcache.store("partitions", key, lambda folder: _save(folder, split),
                    "every client process computes the partitions itself")
    return split
