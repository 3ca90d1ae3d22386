"""Check a scenario against the data, the weights and this machine before any Ray start-up.

``load_scenario`` checks what the file alone decides; :func:`preflight` checks what needs
the data set, the weights file, the output and cache folders, the device or the Ray
cluster, cheapest first.  A problem that stops the run is one :class:`ScenarioError` (or
:class:`DatasetError`) line naming the key and what is allowed; a problem the run survives
(a read-only embedding cache, bf16 on a CPU without bf16 units, clients without query
images) is one logged warning.  Data and pretrained weights the scenario asks to download
are fetched here, once, rather than by every client at the same time.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path

import numpy as np

from fedsim import extractors
from fedsim.config import Scenario, ScenarioError, parse_ray_address
from fedsim.data import load_dataset
from fedsim.seeding import derive_seed

log = logging.getLogger(__name__)

RAY_CONNECT_TIMEOUT_S = 3.0  # a cluster that answers does so in milliseconds


def preflight(scenario: Scenario, output_dir: str | Path | None = None) -> None:
    """Every check below, in order; ``output_dir`` overrides ``scenario.output_dir``."""
    check_output_dir(Path(output_dir or scenario.output_dir))
    check_strategy(scenario)
    check_anonymeter(scenario)
    check_device(scenario)
    check_ray_address(scenario)
    d = scenario.data
    train = load_dataset(d.dataset, d.root or None, "train", download=d.download)
    load_dataset(d.dataset, d.root or None, "test", download=d.download)
    parts, queries = check_partition(scenario)
    warn_unassigned_images(scenario, parts, len(train))
    check_anonymizers_fit_data(scenario, parts)
    check_classifiers_fit_data(scenario, parts)
    if scenario.online.rounds:
        from fedsim.clients.online import check_rounds

        try:
            check_rounds(scenario)
        except ValueError as err:
            raise ScenarioError(str(err)) from None
    check_weights(scenario, len(train.classes))
    check_cache_dir(scenario)
    warn_clients_without_queries(queries)


def check_strategy(scenario: Scenario) -> None:
    """``federation.strategy`` names registered server flows."""
    from fedsim.strategies import strategy_names

    try:
        strategy_names(scenario)
    except ValueError as err:
        raise ScenarioError(f"federation.strategy: {err}") from None


def check_anonymeter(scenario: Scenario) -> None:
    """``privacy.anonymeter = true`` needs the optional anonymeter package on every client."""
    from fedsim.privacy.anonymeter_risks import available

    if scenario.privacy.anonymeter and not available():
        raise ScenarioError("privacy.anonymeter = true needs the anonymeter package: pip install "
                            "'fedsim[anonymeter]' && pip install --no-deps anonymeter (README: anonymeter)")


def check_output_dir(out: Path) -> None:
    """Run folders can be created in ``out``: tried for real (a folder and a file), since
    permissions alone do not tell (read-only mounts, root, a file in the way).  Folders
    created only for the try are removed again."""
    missing = []
    p = out
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".fedsim-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ScenarioError(f"output_dir = {str(out)!r}: cannot create run folders there "
                            f"({type(err).__name__}: {err.strerror or err}); set output_dir "
                            "(or --output-dir) to a writable folder") from None
    finally:
        for folder in missing:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass


def check_device(scenario: Scenario) -> None:
    """``extractor.device = "cuda"`` needs CUDA here; ``amp = "bf16"`` on a CPU without bf16
    units is allowed but slow, so it is warned about.  Only for a local Ray instance: a
    cluster's nodes may have what the driver's machine lacks."""
    import torch

    from fedsim.device import bf16_autocast_ok

    if scenario.federation.ray_address != "local":
        return
    ex = scenario.extractor
    cuda = torch.cuda.is_available()
    if ex.device == "cuda" and not cuda:
        raise ScenarioError('extractor.device = "cuda" but torch finds no CUDA device on this machine; '
                            'use "auto" (CUDA where present, else the CPU) or "cpu"')
    if ex.amp == "bf16" and (ex.device == "cpu" or not cuda) and not bf16_autocast_ok(torch.device("cpu")):
        log.warning('extractor.amp = "bf16" on a CPU without bf16 units (AMX or AVX512-BF16): extraction '
                    'runs several times slower than in fp32; use "auto" (bf16 only where it is fast) or "off"')


def check_ray_address(scenario: Scenario) -> None:
    """A cluster address must answer a TCP connection within a few seconds (Ray itself
    retries for minutes before it gives up).  Only the address given is contacted."""
    address = scenario.federation.ray_address
    host_port = parse_ray_address(address)
    if host_port is None:
        return
    try:
        with socket.create_connection(host_port, timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        reason = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ScenarioError(f"federation.ray_address = {address!r}: no Ray cluster reachable at "
                            f"{host_port[0]}:{host_port[1]} ({reason} within {RAY_CONNECT_TIMEOUT_S:g} s); "
                            'start it (ray start --head) or use "local"') from None


def check_partition(scenario: Scenario) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The training and query partitions (from the labels alone); a split the partitioner
    cannot make, or one that leaves a client without training images, stops the run."""
    from fedsim.clients.release import scenario_indices

    p, n = scenario.partition, scenario.federation.num_clients
    try:
        parts, queries = scenario_indices(scenario, n)
    except ValueError as err:
        text = str(err).replace("num_partitions", "federation.num_clients")
        raise ScenarioError(f"partition.method = {p.method!r}, federation.num_clients = {n}: {text}") from None
    empty = [i for i, part in enumerate(parts) if len(part) == 0]
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        raise ScenarioError(f"partition.method = {p.method!r}, federation.num_clients = {n}: {len(empty)} "
                            f"client(s) get no training images (client {shown}); use fewer clients or "
                            "another partition")
    return parts, queries


def warn_unassigned_images(scenario: Scenario, parts: list[np.ndarray], n_train: int) -> None:
    """Training images no client holds (a partitioner may leave classes or a remainder out)."""
    held = sum(len(p) for p in parts)
    if held < n_train:
        log.warning("%d of %d training images are in no client's partition (partition.method = %r leaves them "
                    "out); their classes' test images may go unused too", n_train - held, n_train,
                    scenario.partition.method)


def check_weights(scenario: Scenario, num_classes: int) -> None:
    """Load the weights into the model once, as every client will: a file that is not a
    checkpoint, is truncated or belongs to another architecture stops the run here."""
    ex = scenario.extractor
    if ex.weights == "random":
        return
    try:
        extractors.create(ex.name, weights=ex.weights, num_classes=num_classes,
                          seed=derive_seed(scenario.seed, "extractor"), download=ex.download)
    except ValueError as err:
        raise ScenarioError(f"extractor.weights: {' '.join(str(err).split())}") from None


def check_cache_dir(scenario: Scenario) -> None:
    """A cache folder that cannot be written is warned about; the run goes on without
    storing new embeddings (see ``fedsim.extractors.cache``)."""
    from fedsim.extractors.cache import EmbeddingCache, warn_unwritable, writable_problem

    ex = scenario.extractor
    if not ex.cache:
        return
    root = EmbeddingCache(ex.cache_dir or None).root
    problem = writable_problem(root)
    if problem:
        warn_unwritable(root, problem)


def check_anonymizers_fit_data(scenario: Scenario, parts: list[np.ndarray] | None = None) -> None:
    """Data-dependent parameter checks (k or n_clusters above a client's size, n_components
    above the embedding size) before any work, on the smallest client's partition."""
    from fedsim import anonymizers

    if parts is None:
        parts, _ = check_partition(scenario)
    n_min = min(len(p) for p in parts)
    if scenario.online.rounds:  # each round anonymizes one batch
        n_min = min(n_min, *scenario.online.batch_sizes())
    dim = extractors.REGISTRY.create(scenario.extractor.name).embedding_dim
    for method, params in scenario.anonymizer_grid():
        try:
            anonymizers.create(method, **params).check_data(n_min, dim)
        except ValueError as err:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ScenarioError(f"anonymizers.{method}{f' ({shown})' if shown else ''}: {err} "
                                f"(smallest client: {n_min} records of dimension {dim})") from None


def check_classifiers_fit_data(scenario: Scenario, parts: list[np.ndarray]) -> None:
    """A classifier's ``k`` must not exceed the largest pool the server can fit it on: every
    client's training records (``none``), or one round's batches in online runs, within its
    ``memory_size``.  Releases smaller than that (aggregating methods) are only known at fit
    time, where kNN votes over all it holds and logs a warning."""
    from fedsim import classifiers

    pool, where = sum(len(p) for p in parts), "every client's training records"
    if scenario.online.rounds:
        pool = min(pool, len(parts) * min(scenario.online.batch_sizes()))
        where = "the first online round's batches"
    for name, params in scenario.classifiers.items():
        clf = classifiers.create(name, **params)
        k, memory = getattr(clf, "k", None), getattr(clf, "memory_size", None)
        limit = min(pool, memory) if memory else pool
        if k is not None and k > limit:
            held = f"memory_size = {memory}" if memory and memory < pool else f"{where}: {pool}"
            raise ScenarioError(f"classifiers.{name}.k = {k} is above the records the server can fit it on "
                                f"({held}); lower k")


def warn_clients_without_queries(queries: list[np.ndarray]) -> None:
    """Clients whose share of the test split is empty get no accuracy (NaN, written as null)."""
    empty = sum(1 for q in queries if len(q) == 0)
    if empty:
        log.warning("%d of %d clients get no query images (the test split is divided like the training "
                    "split: %d queries in all): their accuracy will be NaN (null in results.json: missing, "
                    "not zero); the global accuracy pools the other clients' queries", empty, len(queries),
                    sum(len(q) for q in queries))
