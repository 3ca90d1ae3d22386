"""What a SuperNode's node config says about its party: the things that are local to it.

In deployment every party runs its own SuperNode (``flower-supernode --node-config
"..."``); the node config names what only that machine knows, and the ServerApp never
needs any of it (it gets the scenario through the run config).  Keys:

``partition-id``, ``num-partitions`` (required; Flower's names)
    which client this party is (its id in results.json) and how many there are
    (= the scenario's ``federation.num_clients``).  In simulation Flower sets both.
``data-root``
    where the scenario's data set lives on this machine (``data.root``); the party takes
    partition ``partition-id`` of ``num-partitions`` of it, as in simulation.
``data-folder``
    this party's own images, ``train/<class>/*`` and ``test/<class>/*``: all of them are
    its training and query images (no partitioning).  Every party's folder must have the
    same class folder names (the federation's label set).  Excludes ``data-root``.
``extractor-weights``
    a weights file on this machine, if not the shipped ones (``extractor.weights``;
    every party must use the same weights).
``federation-key-file``
    the clients' shared secret for keyed anonymizers (:mod:`fedsim.clients.keys`).
``device``
    ``auto`` | ``cpu`` | ``cuda`` (``extractor.device``).
``threads``
    CPU threads for this party's torch work (default: the scenario's
    ``federation.client_resources.num_cpus``, as in simulation).
``cache-dir``
    embedding cache folder on this machine (``extractor.cache_dir``).

Values are parsed by Flower as TOML (``partition-id=0 data-root='/data/cifar'``).
Anything else -- an unknown key, a wrong type, a missing folder -- is one
:class:`NodeConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim.clients.keys import NODE_KEY
from fedsim.config import Scenario

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"
DATA_ROOT = "data-root"
DATA_FOLDER = "data-folder"
WEIGHTS = "extractor-weights"
DEVICE = "device"
THREADS = "threads"
CACHE_DIR = "cache-dir"
DEVICES = ("auto", "cpu", "cuda")
#: what each key holds, for error messages
KEYS: dict[str, str] = {
    PARTITION_ID: "integer in [0, num-partitions)",
    NUM_PARTITIONS: "integer >= 1 (= federation.num_clients)",
    DATA_ROOT: "folder of the scenario's data set on this machine",
    DATA_FOLDER: "this party's own image folder (train/<class>/*, test/<class>/*)",
    WEIGHTS: "extractor weights file on this machine",
    NODE_KEY: "federation key file on this machine",
    DEVICE: " | ".join(DEVICES),
    THREADS: "integer >= 1",
    CACHE_DIR: "embedding cache folder on this machine",
}
#: partition.method of a party whose data is all its own (``data-folder``)
OWN_DATA = "own-folder"


class NodeConfigError(ValueError):
    """A node config this client cannot run with; one line naming the key."""


@dataclass(frozen=True)
class NodeConfig:
    partition_id: int
    num_partitions: int
    data_root: str = ""
    data_folder: str = ""
    extractor_weights: str = ""
    key_file: str = ""
    device: str = ""
    threads: int = 0
    cache_dir: str = ""


def _int(config: Mapping[str, Any], key: str, low: int) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise NodeConfigError(f"node config {key} = {value!r}: must be an {KEYS[key]}"
                              if value is not None else f"node config has no {key} ({KEYS[key]})")
    return value


def _path(config: Mapping[str, Any], key: str, kind: str, check: bool) -> str:
    value = config.get(key, "")
    if not isinstance(value, str):
        raise NodeConfigError(f"node config {key} = {value!r}: must be a quoted path ({KEYS[key]}), "
                              f"e.g. {key}='/abs/path'")
    if value and check:
        p = Path(value).expanduser()
        exists = p.is_dir() if kind == "folder" else p.is_file()
        if not exists:
            raise NodeConfigError(f"node config {key} = '{value}': no such {kind} on this machine ({KEYS[key]})")
    return str(Path(value).expanduser()) if value else ""


def parse_node_config(config: Mapping[str, Any], check_paths: bool = True) -> NodeConfig:
    """The validated node config; ``check_paths`` also checks that named files and folders exist."""
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise NodeConfigError(f"node config key {unknown[0]!r} is not known; allowed: {', '.join(KEYS)}")
    num = _int(config, NUM_PARTITIONS, 1)
    pid = _int(config, PARTITION_ID, 0)
    if pid >= num:
        raise NodeConfigError(f"node config {PARTITION_ID} = {pid}: must be < {NUM_PARTITIONS} = {num}")
    root = _path(config, DATA_ROOT, "folder", check_paths)
    folder = _path(config, DATA_FOLDER, "folder", check_paths)
    if root and folder:
        raise NodeConfigError(f"node config: give {DATA_ROOT} (a partition of a shared data set) or "
                              f"{DATA_FOLDER} (this party's own images), not both")
    device = config.get(DEVICE, "")
    if device and device not in DEVICES:
        raise NodeConfigError(f"node config {DEVICE} = {device!r}: must be one of {', '.join(DEVICES)}")
    return NodeConfig(
        partition_id=pid, num_partitions=num, data_root=root, data_folder=folder,
        extractor_weights=_path(config, WEIGHTS, "file", check_paths),
        key_file=_path(config, NODE_KEY, "file", check_paths), device=device,
        threads=_int(config, THREADS, 1) if THREADS in config else 0,
        cache_dir=_path(config, CACHE_DIR, "folder", False),
    )


def localize(scenario: Scenario, node: NodeConfig) -> Scenario:
    """The scenario as this party runs it: its data, weights, device and cache on this machine.
    Only client-side settings change; everything the server computes stays as it was."""
    data, part, ex = scenario.data, scenario.partition, scenario.extractor
    if node.data_root:
        data = dataclasses.replace(data, root=node.data_root)
    if node.data_folder:
        data = dataclasses.replace(data, dataset="imagefolder", root=node.data_folder, download=False)
        part = dataclasses.replace(part, method=OWN_DATA, params={})
    changes = {k: v for k, v in (("weights", node.extractor_weights), ("device", node.device),
                                 ("cache_dir", node.cache_dir)) if v}
    if changes:
        ex = dataclasses.replace(ex, **changes)
    if (data, part, ex) == (scenario.data, scenario.partition, scenario.extractor):
        return scenario
    return dataclasses.replace(scenario, data=data, partition=part, extractor=ex)


def format_node_config(values: Mapping[str, Any]) -> str:
    """``--node-config`` text for ``flower-supernode`` (TOML values: strings quoted)."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        text = str(v)
        if "'" in text:  # a TOML literal string has no escapes
            raise NodeConfigError(f"node config value {text!r}: a single quote is not supported; use a node "
                                  "config TOML file (flower-supernode --node-config node.toml)")
        return f"'{text}'"

    return " ".join(f"{k}={fmt(v)}" for k, v in values.items())
