"""Split a labelled dataset among simulated federated clients.

Partitioners decide how heterogeneous the clients are, which is the main knob of
a federated experiment. They follow the semantics of Flower Datasets'
partitioners (IID, Dirichlet label skew, pathological "k classes per client")
but work on a plain label array so that the data layer does not depend on
``flwr-datasets`` or on Hugging Face datasets.

Every partitioner takes ``(labels, num_partitions, rng, **params)`` and returns
one sorted ``int64`` index array per partition; partitions never overlap.
:func:`partition` is the single entry point: it validates the common arguments,
seeds ``np.random.default_rng(seed)`` and dispatches through
:data:`PARTITIONERS`. :func:`split_like` then divides the test split so that
each client's query set mirrors the label mix of its training partition.
"""

from __future__ import annotations

import inspect
import logging
import numbers
from collections.abc import Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["PARTITIONERS", "partition", "split_like"]

#: How many Dirichlet draws to try before giving up on ``min_partition_size``
#: (the same budget Flower's DirichletPartitioner uses).
DIRICHLET_MAX_TRIES = 10

Partitioner = Callable[..., list[np.ndarray]]


# --------------------------------------------------------------------------- helpers


def _as_labels(labels: Sequence[int] | np.ndarray, what: str = "labels") -> np.ndarray:
    """Return labels as a 1-D int64 array; partitioners index classes by value."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of integer class labels, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_int(name: str, value: object, minimum: int) -> int:
    """Validate an integer parameter; bools are rejected because True == 1 hides mistakes."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _finish(pieces: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Concatenate per-partition chunks into sorted int64 arrays (sorted = stable, cache friendly)."""
    out = []
    for chunks in pieces:
        idx = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)
        out.append(np.sort(idx.astype(np.int64, copy=False)))
    return out


# --------------------------------------------------------------------------- partitioners


def iid_partition(labels: np.ndarray, num_partitions: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle all indices and cut them into nearly equal parts: the homogeneous baseline."""
    perm = rng.permutation(len(labels))
    return [np.sort(part) for part in np.array_split(perm, num_partitions)]


def dirichlet_partition(
    labels: np.ndarray,
    num_partitions: int,
    rng: np.random.Generator,
    *,
    alpha: float,
    min_partition_size: int = 10,
    self_balancing: bool = False,
) -> list[np.ndarray]:
    """Label-skewed split: each class is spread over partitions with Dir(alpha) proportions.

    Small ``alpha`` concentrates each class on few clients (strong non-IID),
    large ``alpha`` approaches IID. Draws are repeated until every partition
    holds at least ``min_partition_size`` samples, because an empty client
    would break training and evaluation downstream. ``self_balancing`` gives
    no further samples to partitions already above the average size, which
    keeps partition sizes comparable (Flower's behaviour).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    min_partition_size = _check_int("min_partition_size", min_partition_size, 0)
    if not isinstance(self_balancing, (bool, np.bool_)):
        raise ValueError(f"self_balancing must be true or false, got {self_balancing!r}")

    n = len(labels)
    if num_partitions * min_partition_size > n:
        raise ValueError(
            f"min_partition_size={min_partition_size} is impossible: {num_partitions} partitions x "
            f"{min_partition_size} > {n} samples; lower min_partition_size or num_partitions"
        )
    class_indices = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    concentration = np.full(num_partitions, float(alpha))
    average = n / num_partitions

    smallest = 0
    for attempt in range(1, DIRICHLET_MAX_TRIES + 1):
        pieces: list[list[np.ndarray]] = [[] for _ in range(num_partitions)]
        sizes = np.zeros(num_partitions, dtype=np.int64)
        for idx in class_indices:
            idx = rng.permutation(idx)
            props = rng.dirichlet(concentration)
            if self_balancing:
                open_parts = sizes <= average
                props = np.where(open_parts, props, 0.0)
                total = props.sum()
                # Tiny alpha can underflow every open proportion to 0: fall back to uniform.
                props = props / total if total > 0 else open_parts / open_parts.sum()
            cuts = np.minimum((np.cumsum(props) * len(idx)).astype(np.int64)[:-1], len(idx))
            for p, chunk in enumerate(np.split(idx, cuts)):
                if chunk.size:
                    pieces[p].append(chunk)
                    sizes[p] += chunk.size
        smallest = int(sizes.min())
        if smallest >= min_partition_size:
            logger.debug("dirichlet(alpha=%s) succeeded on draw %d", alpha, attempt)
            return _finish(pieces)
        logger.debug("dirichlet draw %d: smallest partition %d < %d, redrawing", attempt, smallest, min_partition_size)
    raise ValueError(
        f"dirichlet could not give every partition min_partition_size={min_partition_size} samples in "
        f"{DIRICHLET_MAX_TRIES} draws (alpha={alpha}, smallest got {smallest}); "
        "raise alpha, lower min_partition_size or use fewer partitions"
    )


def shards_partition(
    labels: np.ndarray,
    num_partitions: int,
    rng: np.random.Generator,
    *,
    classes_per_client: int,
) -> list[np.ndarray]:
    """Pathological split: every client sees exactly ``classes_per_client`` classes.

    Classes are first dealt round-robin from a shuffled class order so that no
    class is dropped whenever ``num_partitions * classes_per_client`` covers
    them; remaining slots get random classes the client does not hold yet.
    Each class's shuffled samples are then split evenly among its holders.
    """
    classes = np.unique(labels)
    k = len(classes)
    classes_per_client = _check_int("classes_per_client", classes_per_client, 1)
    if classes_per_client > k:
        raise ValueError(f"classes_per_client must be between 1 and the number of classes ({k}), got {classes_per_client}")

    owned = np.zeros((num_partitions, k), dtype=bool)
    order = rng.permutation(k)
    for slot in range(num_partitions * classes_per_client):
        client = slot % num_partitions  # round j = slot // num_partitions deals one class to every client
        if slot < k:
            cls = order[slot]
        else:
            cls = rng.choice(np.flatnonzero(~owned[client]))
        owned[client, cls] = True

    dropped = np.flatnonzero(~owned.any(axis=0))
    if dropped.size:
        logger.warning(
            "shards: %d partitions x %d classes cannot cover %d classes; classes %s are left out",
            num_partitions, classes_per_client, k, classes[dropped].tolist(),
        )

    pieces: list[list[np.ndarray]] = [[] for _ in range(num_partitions)]
    for c in range(k):
        holders = np.flatnonzero(owned[:, c])
        if not holders.size:
            continue
        idx = rng.permutation(np.flatnonzero(labels == classes[c]))
        if idx.size < holders.size:
            logger.warning("shards: class %s has %d samples for %d clients; some get none", classes[c], idx.size, holders.size)
        for client, chunk in zip(holders, np.array_split(idx, holders.size)):
            pieces[client].append(chunk)
    return _finish(pieces)


#: Partitioner registry: method name -> callable(labels, num_partitions, rng, **params).
PARTITIONERS: dict[str, Partitioner] = {
    "iid": iid_partition,
    "dirichlet": dirichlet_partition,
    "shards": shards_partition,
}


# --------------------------------------------------------------------------- public entry points


def _check_params(method: str, fn: Partitioner, params: dict) -> None:
    """Reject unknown or missing parameters with the list of allowed ones (config typos are common)."""
    sig = inspect.signature(fn)
    allowed = [p for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    names = [p.name for p in allowed]
    unknown = sorted(set(params) - set(names))
    if unknown:
        allowed_txt = ", ".join(names) if names else "none"
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for partitioner {method!r}; allowed: {allowed_txt}")
    missing = [p.name for p in allowed if p.default is inspect.Parameter.empty and p.name not in params]
    if missing:
        raise ValueError(f"partitioner {method!r} requires parameter(s): {', '.join(missing)}")


def partition(
    method: str,
    labels: Sequence[int] | np.ndarray,
    num_partitions: int,
    seed: int,
    **params: object,
) -> list[np.ndarray]:
    """Split sample indices among ``num_partitions`` clients with the named partitioner.

    Returns one sorted, disjoint int64 index array per partition. The same
    ``seed`` always yields the same split, so experiments are reproducible.
    """
    if method not in PARTITIONERS:
        raise ValueError(f"unknown partitioner method {method!r}; allowed: {', '.join(sorted(PARTITIONERS))}")
    fn = PARTITIONERS[method]
    labels = _as_labels(labels)
    num_partitions = _check_int("num_partitions", num_partitions, 1)
    if num_partitions > len(labels):
        raise ValueError(f"num_partitions must be <= the number of samples ({len(labels)}), got {num_partitions}")
    _check_params(method, fn, params)
    rng = np.random.default_rng(seed)
    parts = fn(labels, num_partitions, rng, **params)
    logger.debug("partition %s: sizes %s", method, [len(p) for p in parts])
    return parts


def split_like(
    train_labels: Sequence[int] | np.ndarray,
    train_parts: Sequence[np.ndarray],
    test_labels: Sequence[int] | np.ndarray,
    seed: int,
) -> list[np.ndarray]:
    """Partition the test split so each client's query set has its training label mix.

    For every class, the test samples of that class are shuffled and divided
    among clients in proportion to how the training samples of that class were
    divided, using largest-remainder rounding (ties broken at random) so the
    counts add up exactly. Test samples of classes no client trains on are
    left out. Evaluating on a matching distribution is what makes per-client
    retrieval metrics meaningful under label skew.
    """
    train_labels = _as_labels(train_labels, "train_labels")
    test_labels = _as_labels(test_labels, "test_labels")
    num_clients = len(train_parts)
    if num_clients < 1:
        raise ValueError("train_parts must contain at least one partition")

    classes, inverse = np.unique(np.concatenate([train_labels, test_labels]), return_inverse=True)
    train_cls, test_cls = inverse[: len(train_labels)], inverse[len(train_labels):]
    counts = np.zeros((num_clients, len(classes)), dtype=np.int64)
    for i, part in enumerate(train_parts):
        part = np.asarray(part)
        if part.size and (not np.issubdtype(part.dtype, np.integer) or part.min() < 0 or part.max() >= len(train_labels)):
            raise ValueError(f"train_parts[{i}] must hold integer indices into train_labels (0..{len(train_labels) - 1})")
        counts[i] = np.bincount(train_cls[part], minlength=len(classes))

    rng = np.random.default_rng(seed)
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in range(len(classes)):
        idx = np.flatnonzero(test_cls == c)
        weights = counts[:, c]
        total = int(weights.sum())
        if not idx.size or total == 0:
            if idx.size:
                logger.debug("split_like: no client trains on class %s; its %d test samples are unused", classes[c], idx.size)
            continue
        idx = rng.permutation(idx)
        exact = weights * idx.size  # integer arithmetic: quota_i = exact_i / total
        alloc = exact // total
        remainder = exact % total
        short = idx.size - int(alloc.sum())
        if short:
            order = np.lexsort((rng.random(num_clients), -remainder))  # largest remainder first
            alloc[order[:short]] += 1
        for client, chunk in enumerate(np.split(idx, np.cumsum(alloc)[:-1])):
            if chunk.size:
                pieces[client].append(chunk)
    return _finish(pieces)
