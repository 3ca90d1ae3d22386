"""Split a labelled dataset among simulated clients with Flower Datasets' partitioners.

Partitioners decide how heterogeneous the clients are, the main knob of a federated
experiment.  Every row partitioner of ``flwr_datasets.partitioner`` is available by its
class name in :data:`REGISTRY`, with its own parameters, and so are the short names
scenarios have always used (:data:`ALIASES`):

* ``iid`` -- ``IidPartitioner``;
* ``dirichlet`` -- ``DirichletPartitioner`` (``alpha = 0.5`` unless given);
* ``shards`` -- :class:`CoveringPathologicalPartitioner` (``num_classes_per_partition = 2``
  unless given): Flower's ``PathologicalPartitioner`` leaves classes out whenever there
  are fewer clients than classes, whatever its ``class_assignment_mode``;
* ``natural_id`` -- ``NaturalIdPartitioner``: one client per party of the data.

They run on a label-only in-memory ``datasets.Dataset`` (columns ``idx``, ``label`` and,
for partitioners by party, ``party``), so partitioning never decodes an image.  fedsim
sets ``num_partitions`` (the federation's clients), ``partition_by`` and ``seed``; the
rows are shuffled with the seed first, because ``IidPartitioner`` and the size
partitioners cut contiguous blocks and Dirichlet splits each class in row order.  Every
partition comes back as sorted int64 indices into the labels.

:func:`split_for_clients` also divides the test split: by party when the clients are
parties, else like the training split, class by class (:func:`split_like`).

This module imports ``datasets`` (pyarrow, pandas: about 200 MB per process); client
processes read the splits the driver stored (``fedsim.data.splits``) instead.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import logging
import numbers
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import Dataset
from flwr_datasets.partitioner import (ContinuousPartitioner, DirichletPartitioner, DistributionPartitioner,
                                       ExponentialPartitioner, GroupedNaturalIdPartitioner, IidPartitioner,
                                       InnerDirichletPartitioner, LinearPartitioner, NaturalIdPartitioner,
                                       Partitioner, PathologicalPartitioner, ShardPartitioner, SizePartitioner,
                                       SquarePartitioner)

from fedsim.registry import Registry
from fedsim.seeding import derive_seed

logger = logging.getLogger(__name__)

__all__ = ["ALIASES", "CoveringPathologicalPartitioner", "REGISTRY", "create", "partition", "split_by_party",
           "split_for_clients", "split_like", "validate"]


class CoveringPathologicalPartitioner(Partitioner):
    """Exactly ``num_classes_per_partition`` classes per partition, and every class held by
    some partition whenever ``num_partitions * num_classes_per_partition`` >= the classes.

    Classes are dealt round-robin from a seeded class order, so the first deal covers
    them all; further slots get random classes the partition does not hold yet.  Each
    class's rows are split evenly among its holders, in row order (fedsim shuffles rows).
    """

    def __init__(self, num_partitions: int, partition_by: str, num_classes_per_partition: int,
                 seed: int | None = 42) -> None:
        super().__init__()
        if num_classes_per_partition < 1:
            raise ValueError(f"num_classes_per_partition must be >= 1, got {num_classes_per_partition}")
        self._num_partitions = num_partitions
        self._partition_by = partition_by
        self._per_partition = num_classes_per_partition
        self._seed = seed
        self._indices: list[np.ndarray] | None = None

    @property
    def num_partitions(self) -> int:
        return self._num_partitions

    def load_partition(self, partition_id: int) -> Dataset:
        if self._indices is None:
            self._indices = self._assign(np.asarray(self.dataset[self._partition_by]))
        return self.dataset.select(self._indices[partition_id])

    def _assign(self, labels: np.ndarray) -> list[np.ndarray]:
        classes = np.unique(labels)
        n, k = self._num_partitions, len(classes)
        if self._per_partition > k:
            raise ValueError(f"num_classes_per_partition = {self._per_partition} is above the number of classes ({k})")
        rng = np.random.default_rng(self._seed)
        owned = np.zeros((n, k), dtype=bool)
        order = rng.permutation(k)
        for slot in range(n * self._per_partition):
            holder = slot % n
            owned[holder, order[slot] if slot < k else rng.choice(np.flatnonzero(~owned[holder]))] = True
        pieces: list[list[np.ndarray]] = [[] for _ in range(n)]
        for c in range(k):
            holders = np.flatnonzero(owned[:, c])
            if holders.size:
                for holder, chunk in zip(holders, np.array_split(np.flatnonzero(labels == classes[c]), holders.size)):
                    pieces[holder].append(chunk)
        return [np.concatenate(p) if p else np.empty(0, dtype=np.int64) for p in pieces]


#: parameters fedsim sets itself, and why (for the error message)
NOT_USER_SET = {
    "num_partitions": "it is federation.num_clients",
    "partition_by": 'fedsim partitions by "label" (by "party" for natural-id partitioners)',
    "seed": "it derives from the scenario's top-level seed",
    "shuffle": "it only orders rows inside a partition, and fedsim sorts every partition",
}

#: partitioners that make one client per party (or group of parties), not per label mix
BY_PARTY = (NaturalIdPartitioner, GroupedNaturalIdPartitioner)

#: short name -> (partitioner, defaults that differ from its own)
ALIASES: dict[str, tuple[type[Partitioner], dict[str, Any]]] = {
    "iid": (IidPartitioner, {}),
    "dirichlet": (DirichletPartitioner, {"alpha": 0.5}),
    "shards": (CoveringPathologicalPartitioner, {"num_classes_per_partition": 2}),
    "natural_id": (NaturalIdPartitioner, {}),
}

REGISTRY: Registry[Partitioner] = Registry("partitioner", internal=tuple(NOT_USER_SET))
for _name, (_cls, _defaults) in ALIASES.items():
    REGISTRY.register(_name)(functools.partial(_cls, **_defaults))
# Flower's row partitioners.  Left out: IdToSizeFncPartitioner (its parameter is a Python
# function, which a scenario file cannot hold) and the Vertical* ones (they split columns).
for _cls in (IidPartitioner, DirichletPartitioner, ShardPartitioner, PathologicalPartitioner,
             InnerDirichletPartitioner, SizePartitioner, LinearPartitioner, SquarePartitioner,
             ExponentialPartitioner, DistributionPartitioner, ContinuousPartitioner, NaturalIdPartitioner,
             GroupedNaturalIdPartitioner, CoveringPathologicalPartitioner):
    REGISTRY.register(_cls.__name__)(_cls)


def partitioner_class(method: str) -> type[Partitioner]:
    factory = REGISTRY.get(method)
    return factory.func if isinstance(factory, functools.partial) else factory


def by_party(method: str) -> bool:
    """True when ``method`` makes the clients from the data's parties."""
    return issubclass(partitioner_class(method), BY_PARTY)


# --------------------------------------------------------------------------- parameter types


def _arms(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _is_list_hint(hint: Any) -> bool:
    return typing.get_origin(hint) in (list, collections.abc.Sequence) or hint in (list, collections.abc.Sequence)


def _is_array_hint(hint: Any) -> bool:
    return hint is np.ndarray or typing.get_origin(hint) is np.ndarray


def _fits(value: Any, hint: Any) -> bool:
    """Whether a TOML value suits the partitioner's annotation (unknown annotations pass:
    the partitioner checks those itself)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in _arms(hint))
    if typing.get_origin(hint) is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if _is_list_hint(hint):
        item = (typing.get_args(hint) or (Any,))[0]
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if _is_array_hint(hint):
        try:
            return isinstance(value, list) and np.asarray(value).dtype.kind in "iuf"
        except ValueError:  # ragged
            return False
    return True


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arms = [a for a in _arms(hint) if a is not type(None) and not (a is int and float in _arms(hint))]
        return " or ".join(dict.fromkeys(_describe(a) for a in arms))
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if _is_list_hint(hint):
        return f"a list ({_describe((typing.get_args(hint) or (Any,))[0])} each)"
    if _is_array_hint(hint):
        return "a list of numbers (or of lists of numbers)"
    return getattr(hint, "__name__", str(hint))


def _convert(value: Any, hint: Any) -> Any:
    """A TOML list for a parameter that must be an array becomes one."""
    arms = _arms(hint)
    if isinstance(value, list) and not any(_is_list_hint(a) and _fits(value, a) for a in arms) \
            and any(_is_array_hint(a) for a in arms):
        return np.asarray(value)
    return value


# --------------------------------------------------------------------------- entry points


def create(method: str, params: Mapping[str, Any], num_partitions: int, seed: int) -> Partitioner:
    """Build the named partitioner for ``num_partitions`` clients; an unknown name, an unknown,
    missing or mistyped parameter is a one-line ValueError saying what is allowed."""
    for name, why in NOT_USER_SET.items():
        if name in params:
            raise ValueError(f"parameter {name!r} cannot be set in a scenario: {why}")
    REGISTRY.check_parameters(method, dict(params))
    factory, cls = REGISTRY.get(method), partitioner_class(method)
    signature, hints = inspect.signature(factory), typing.get_type_hints(cls.__init__)
    missing = [n for n, p in signature.parameters.items()
               if p.default is p.empty and n not in params and n not in NOT_USER_SET]
    if missing:
        raise ValueError(f"partitioner {method!r} needs parameter {missing[0]!r} "
                         f"({_describe(hints.get(missing[0], Any))})")
    sizes = params.get("partition_sizes")
    if isinstance(sizes, list) and len(sizes) != num_partitions:
        raise ValueError(f"partition_sizes lists {len(sizes)} sizes, one per client, and there are {num_partitions} "
                         "clients (federation.num_clients)")
    kwargs: dict[str, Any] = {}
    for name, value in params.items():
        hint = hints.get(name, Any)
        if not _fits(value, hint):
            raise ValueError(f"parameter {name!r} = {value!r} of partitioner {method!r} must be {_describe(hint)}")
        kwargs[name] = _convert(value, hint)
    fixed = {"num_partitions": num_partitions, "partition_by": "party" if by_party(method) else "label", "seed": seed}
    kwargs.update({k: v for k, v in fixed.items() if k in signature.parameters})
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"partitioner {method!r}: {' '.join(str(err).split())}") from None


def validate(method: str, params: Mapping[str, Any], num_partitions: int) -> None:
    """What can be checked without the data: the name and the parameters."""
    create(method, params, num_partitions, seed=0)


def _as_labels(labels: Sequence[int] | np.ndarray, what: str = "labels") -> np.ndarray:
    """Return labels as a 1-D int64 array; partitioners index classes by value."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of integer class labels, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def partition(method: str, labels: Sequence[int] | np.ndarray, num_partitions: int, seed: int,
              params: Mapping[str, Any] | None = None, parties: np.ndarray | None = None) -> list[np.ndarray]:
    """Split sample indices among ``num_partitions`` clients with the named partitioner.

    Returns one sorted int64 index array per partition; the same ``seed`` always gives
    the same split.  ``parties`` (one name per sample) is needed by partitioners by party.
    """
    labels = _as_labels(labels)
    if isinstance(num_partitions, bool) or not isinstance(num_partitions, numbers.Integral) or num_partitions < 1:
        raise ValueError(f"num_partitions must be an integer >= 1, got {num_partitions!r}")
    if num_partitions > len(labels):
        raise ValueError(f"num_partitions must be <= the number of samples ({len(labels)}), got {num_partitions}")
    partitioner = create(method, params or {}, int(num_partitions), seed)
    order = np.random.default_rng(derive_seed(seed, "shuffle")).permutation(len(labels))
    columns: dict[str, np.ndarray] = {"idx": order, "label": labels[order]}
    if by_party(method):
        if parties is None:
            raise ValueError(f"partitioner {method!r} makes one client per party, and this data set has no "
                             'parties: use data.dataset = "imagefolder-parties" (root/{train,test}/<party>/<class>/)')
        columns["party"] = np.asarray(parties, dtype=str)[order]
    partitioner.dataset = Dataset.from_dict(columns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            made = partitioner.num_partitions
            if made != num_partitions:
                what = " (one per party)" if by_party(method) else ""
                raise ValueError(f"it makes {made} partitions{what}, and num_partitions = {num_partitions}")
            parts = [np.sort(partitioner.load_partition(p).with_format("arrow")["idx"].to_numpy().astype(np.int64))
                     for p in range(num_partitions)]
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"partitioner {method!r}: {' '.join(str(err).split())}") from None
    for w in caught:  # the outcome is checked (and warned about) by fedsim.preflight
        logger.debug("%s: %s", method, w.message)
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
    return [np.sort(np.concatenate(p)) if p else np.empty(0, dtype=np.int64) for p in pieces]


def split_by_party(train_parties: np.ndarray, train_parts: Sequence[np.ndarray], test_parties: np.ndarray
                   ) -> list[np.ndarray]:
    """Each client's query set: the test images of the parties it trains on (its own)."""
    return [np.flatnonzero(np.isin(test_parties, np.unique(train_parties[part]))).astype(np.int64)
            for part in train_parts]


def split_for_clients(method: str, params: Mapping[str, Any], train_labels: np.ndarray, test_labels: np.ndarray,
                      num_partitions: int, seed: int, train_parties: np.ndarray | None = None,
                      test_parties: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training indices, query indices) of every client, from the scenario's ``seed``."""
    parts = partition(method, train_labels, num_partitions, derive_seed(seed, "partition"), params, train_parties)
    if by_party(method):
        return parts, split_by_party(np.asarray(train_parties, dtype=str), parts, np.asarray(test_parties, dtype=str))
    return parts, split_like(train_labels, parts, test_labels, derive_seed(seed, "query-partition"))
