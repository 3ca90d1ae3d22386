"""Every message between the server and a client, in ONE place: fields, dtypes, shapes,
limits, encoding to Flower records and validation of what arrives.

The server is the adversary the privacy numbers are about, so this module is also the
list of what it can see (the README's threat model is written from it).  A reply is
decoded and validated completely before any of it is used: a reply that fails is
rejected whole with a :class:`ProtocolError` naming the reason, and never half-enters a
pool.

Message types (Flower routes ``<category>.<action>`` to the ClientApp's handlers):

=================  ========================  ============================================
phase              Flower message type       reply
=================  ========================  ============================================
``hello``          ``query.hello``           :class:`HelloReply`   (partition id; participation)
``stats``          ``query.stats``           :class:`StatsReply`   (pca: n, sum, X^T X)
``release``        ``train.release``         :class:`ReleaseReply` (one configuration)
``evaluate``       ``evaluate.release``      :class:`ScoresReply`  (client-side scoring)
``online``         ``train.online``          :class:`ReleaseReply` (one online round)
``online_evaluate````evaluate.online``       :class:`ScoresReply`  (every test domain)
``sums``           ``train.sums``            :class:`SumsReply`    (fed_ncm / fed_ridge statistics)
``fedavg``         ``train.fedavg``          :class:`UpdateReply`  (fedavg_head: one round's local model)
(SecAgg+)          ``train``                 Flower's SecAgg+ stages; the collect stage's
                                             statistics: :class:`SecureEncoding`
=================  ========================  ============================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedsim.classifiers.sufficient import NORM_POWER

if TYPE_CHECKING:
    from fedsim.classifiers.federated import AggregateMethod
    from fedsim.config import SecureAggregationConfig

MESSAGE_TYPES = {
    "hello": "query.hello",
    "stats": "query.stats",
    "release": "train.release",
    "evaluate": "evaluate.release",
    "online": "train.online",
    "online_evaluate": "evaluate.online",
    "sums": "train.sums",
    "fedavg": "train.fedavg",
}
PHASES = tuple(MESSAGE_TYPES)


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the text is the reason recorded."""


# ------------------------------------------------------------------------------ requests


@dataclass
class Request:
    """What the server asks; the same fields for every phase (unused ones keep defaults).

    ``send_queries``: the client also returns its transformed queries (server-side
    evaluation).  ``arrays`` are named array groups: ``shared`` (a federated transform,
    pca), ``classifier.<name>`` (a fitted model for client-side scoring)."""

    phase: str
    index: int  # configuration index
    method: str
    params: dict[str, Any]
    round: int = 0
    batch_size: int = 0
    send_queries: bool = True
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """The request's fields as a config record's values (SecAgg+ carries them as its fit config)."""
        return {"phase": self.phase, "index": self.index, "method": self.method, "params": json.dumps(self.params),
                "round": self.round, "batch-size": self.batch_size, "send-queries": self.send_queries}

    def to_message(self, node_id: int) -> Message:
        if self.phase not in MESSAGE_TYPES:
            raise ProtocolError(f"unknown phase {self.phase!r}; allowed: {', '.join(PHASES)}")
        content: dict[str, Any] = {"config": ConfigRecord(self.config())}
        for name, group in self.arrays.items():
            content[name] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in group.items()})
        return Message(RecordDict(content), message_type=MESSAGE_TYPES[self.phase], dst_node_id=node_id,
                       group_id=f"{self.phase}-{self.index}-{self.round}")

    @classmethod
    def from_message(cls, msg: Message, record: str = "config") -> "Request":
        """The request in ``msg``; ``record`` names its config record (SecAgg+: ``fitins.config``,
        whose message carries Flower's own empty parameters and no fedsim arrays)."""
        try:
            cfg = msg.content[record]
            arrays = {name: {k: v.numpy() for k, v in rec.items()}
                      for name, rec in msg.content.array_records.items()} if record == "config" else {}
            return cls(phase=str(cfg["phase"]), index=int(cfg["index"]), method=str(cfg["method"]),
                       params=json.loads(str(cfg["params"])), round=int(cfg["round"]),
                       batch_size=int(cfg["batch-size"]), send_queries=bool(cfg["send-queries"]),
                       arrays=arrays)
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"malformed request: {type(err).__name__}: {err}") from None

    def classifier_states(self) -> dict[str, dict[str, np.ndarray]]:
        return {name.removeprefix("classifier."): state for name, state in self.arrays.items()
                if name.startswith("classifier.")}


# ------------------------------------------------------------------------------ replies


@dataclass
class Limits:
    """What the server accepts from one client's reply.

    ``dim`` is the embedding dimension of the configuration (set by the first accepted
    release; every other client must match); ``num_classes`` comes from the clients'
    first releases and must agree; ``max_rows`` is ``federation.max_release_rows``;
    ``release_rows(n)`` the most rows the configured method releases from n records
    (n itself, except for synthesizing methods asked for more samples)."""

    max_rows: int
    dim: int | None = None
    num_classes: int | None = None
    release_rows: Callable[[int], int] = lambda n: n


def _array(record: ArrayRecord, name: str, where: str) -> np.ndarray:
    if name not in record:
        raise ProtocolError(f"{where}: missing array {name!r}")
    return record[name].numpy()


def _check_matrix(x: np.ndarray, name: str, dim: int | None) -> None:
    if x.dtype != np.float32 or x.ndim != 2:
        raise ProtocolError(f"{name}: expected a float32 matrix, got {x.dtype} with shape {x.shape}")
    if dim is not None and len(x) and x.shape[1] != dim:
        raise ProtocolError(f"{name}: embedding dimension {x.shape[1]}, expected {dim} (as the other clients)")
    if not np.isfinite(x).all():
        raise ProtocolError(f"{name}: contains NaN or infinite values")


def _check_labels(y: np.ndarray, name: str, rows: int, num_classes: int | None) -> None:
    if y.dtype != np.int64 or y.shape != (rows,):
        raise ProtocolError(f"{name}: expected int64 labels of shape ({rows},), got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        top = "" if num_classes is None else f", {num_classes - 1}"
        raise ProtocolError(f"{name}: labels must be in [0{top}], got [{y.min()}, {y.max()}]")


@dataclass
class ReleaseReply:
    """One client's release for one configuration (or one online round).

    What the server sees: ``x_train``/``y_train`` (the anonymized release, labels in
    clear), with server-side evaluation ``x_query.<domain>``/``y_query`` (queries transformed
    by the method's per-record part), ``n_train``/``n_query`` (sizes; the row limits),
    ``num_classes``, its training label histogram (the report's partition table), the client's own privacy and utility measurements and
    timings, and the state of its embedding cache."""

    partition_id: int
    x_train: np.ndarray
    y_train: np.ndarray
    n_train: int
    n_query: int
    num_classes: int
    label_histogram: np.ndarray | None = None  # the partition table
    y_query: np.ndarray | None = None
    x_query_domains: list[np.ndarray] = field(default_factory=list)  # one matrix per test domain
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    embedding_cache: str = "off"
    domain: str = ""

    def to_content(self) -> RecordDict:
        arrays = {"x_train": self.x_train, "y_train": self.y_train}
        if self.label_histogram is not None:
            arrays["label_histogram"] = self.label_histogram
        if self.y_query is not None:
            arrays["y_query"] = self.y_query
            arrays.update({f"x_query.{j}": q for j, q in enumerate(self.x_query_domains)})
        return RecordDict({
            "release": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()}),
            "info": ConfigRecord({"partition-id": self.partition_id, "n-train": self.n_train,
                                  "n-query": self.n_query, "num-classes": self.num_classes,
                                  "embedding-cache": self.embedding_cache, "domain": self.domain}),
            "metrics": MetricRecord({k: float(v) for k, v in self.metrics.items()}),
            "timings": MetricRecord({k: float(v) for k, v in self.timings.items()}),
        })

    @classmethod
    def from_content(cls, content: RecordDict) -> "ReleaseReply":
        try:
            rec, info = content["release"], content["info"]
            n_domains = sum(1 for k in rec if k.startswith("x_query."))
            queries = [_array(rec, f"x_query.{j}", "release") for j in range(n_domains)]
            return cls(
                partition_id=int(info["partition-id"]), x_train=_array(rec, "x_train", "release"),
                y_train=_array(rec, "y_train", "release"), n_train=int(info["n-train"]),
                n_query=int(info["n-query"]), num_classes=int(info["num-classes"]),
                label_histogram=rec["label_histogram"].numpy() if "label_histogram" in rec else None,
                y_query=_array(rec, "y_query", "release") if "y_query" in rec else None,
                x_query_domains=queries,
                metrics=dict(content["metrics"]) if "metrics" in content else {},
                timings=dict(content["timings"]) if "timings" in content else {},
                embedding_cache=str(info["embedding-cache"]), domain=str(info["domain"]),
            )
        except ProtocolError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"release: missing or malformed field ({type(err).__name__}: {err})") from None

    def validate(self, limits: Limits, want_queries: bool, n_domains: int = 1) -> None:
        """Every check the server makes before using a release; raises :class:`ProtocolError`."""
        _check_matrix(self.x_train, "x_train", limits.dim)
        if self.n_train < 0 or self.n_query < 0:
            raise ProtocolError(f"negative sizes n_train={self.n_train}, n_query={self.n_query}")
        if self.num_classes < 1 or (limits.num_classes is not None and self.num_classes != limits.num_classes):
            raise ProtocolError(f"num_classes {self.num_classes} differs from the federation's {limits.num_classes}")
        _check_labels(self.y_train, "y_train", len(self.x_train), self.num_classes)
        allowed = min(limits.max_rows, limits.release_rows(self.n_train))
        if len(self.x_train) > allowed:
            raise ProtocolError(f"x_train has {len(self.x_train)} rows; at most {allowed} allowed (the client "
                                f"owns {self.n_train} records; federation.max_release_rows = {limits.max_rows})")
        hist = self.label_histogram
        if hist is not None and (hist.dtype != np.int64 or hist.shape != (self.num_classes,)
                                 or hist.min(initial=0) < 0 or int(hist.sum()) != self.n_train):
            raise ProtocolError(f"label_histogram: expected {self.num_classes} non-negative int64 counts "
                                f"summing to n_train={self.n_train}")
        if not want_queries:
            if self.y_query is not None:
                raise ProtocolError("queries were sent but not asked for (client-side evaluation)")
            return
        if self.y_query is None:
            raise ProtocolError("missing transformed queries (server-side evaluation asks for them)")
        if len(self.x_query_domains) != n_domains:
            raise ProtocolError(f"expected queries in {n_domains} test domain(s), got {len(self.x_query_domains)}")
        _check_labels(self.y_query, "y_query", self.n_query, self.num_classes)
        for j, q in enumerate(self.x_query_domains):
            _check_matrix(q, f"x_query.{j}", self.x_train.shape[1] if len(self.x_train) else limits.dim)
            if len(q) != self.n_query:
                raise ProtocolError(f"x_query.{j}: {len(q)} rows, n_query = {self.n_query}")


@dataclass
class HelloReply:
    """The partition a node serves, asked once before the first round when participation
    is sampled: the server draws its samples by partition id, never by Flower's random
    node ids, so that the same seed asks the same clients."""

    partition_id: int

    def to_content(self) -> RecordDict:
        return RecordDict({"info": ConfigRecord({"partition-id": self.partition_id})})

    @classmethod
    def from_content(cls, content: RecordDict) -> "HelloReply":
        try:
            return cls(int(content["info"]["partition-id"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"hello: missing or malformed field ({type(err).__name__}: {err})") from None


@dataclass
class StatsReply:
    """Sufficient statistics for a federated transform (pca): n, column sums, X^T X."""

    partition_id: int
    stats: dict[str, np.ndarray]

    def to_content(self) -> RecordDict:
        return RecordDict({"stats": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in self.stats.items()}),
                           "info": ConfigRecord({"partition-id": self.partition_id})})

    @classmethod
    def from_content(cls, content: RecordDict) -> "StatsReply":
        try:
            rec = content["stats"]
            return cls(int(content["info"]["partition-id"]), {k: _array(rec, k, "stats") for k in ("n", "sum", "outer")})
        except ProtocolError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"stats: missing or malformed field ({type(err).__name__}: {err})") from None

    def validate(self, limits: Limits) -> None:
        n, total, outer = self.stats["n"], self.stats["sum"], self.stats["outer"]
        d = total.shape[0] if total.ndim == 1 else -1
        if n.shape != (1,) or int(n[0]) < 1 or int(n[0]) > limits.max_rows:
            raise ProtocolError(f"stats: n must be one count in [1, {limits.max_rows}], got {n.tolist()[:3]}")
        if d < 1 or outer.shape != (d, d) or (limits.dim is not None and d != limits.dim):
            raise ProtocolError(f"stats: sum {total.shape} and outer {outer.shape} do not match one dimension")
        if not (np.isfinite(total).all() and np.isfinite(outer).all()):
            raise ProtocolError("stats: contain NaN or infinite values")


#: every statistic an aggregate flow's client may send (``SumsReply.stats``), by name: its
#: dtype and its shape in the federation's class count C and feature dimension d;
#: ``val.<name>`` is the same statistic of the client's held-out share (fed_ridge, lam = "auto")
STATISTIC_SHAPES = {"counts": (np.int64, ("C",)), "sums": (np.float64, ("C", "d")),
                    "gram": (np.float64, ("d", "d")), "xty": (np.float64, ("d", "C"))}
HELD_OUT_PREFIX = "val."
SYMMETRY_TOLERANCE = 1e-8  # |G - G^T| relative to max |G|


def _statistic(name: str) -> tuple[type, tuple[str, ...]] | None:
    return STATISTIC_SHAPES.get(name.removeprefix(HELD_OUT_PREFIX))


@dataclass
class SumsReply:
    """One client's sufficient statistics for an aggregate flow (fed_ncm, fed_ridge).

    What the server sees: the statistics of :data:`STATISTIC_SHAPES` -- per-class sums and
    counts, or X^T X, X^T Y and counts (with ``val.`` the same for a held-out share) --
    never a record; ``n_train``/``n_query``, ``num_classes``, the training label histogram,
    timings and the state of the embedding cache."""

    partition_id: int
    n_train: int
    n_query: int
    num_classes: int
    label_histogram: np.ndarray
    stats: dict[str, np.ndarray]
    timings: dict[str, float] = field(default_factory=dict)
    embedding_cache: str = "off"

    def dim(self) -> int | None:
        """The feature dimension the statistics claim (the server fixes one by majority)."""
        for name, value in self.stats.items():
            _, shape = _statistic(name) or (None, ())
            if "d" in shape and value.ndim == len(shape):
                return int(value.shape[shape.index("d")])
        return None

    def to_content(self) -> RecordDict:
        arrays = {**self.stats, "label_histogram": self.label_histogram}
        return RecordDict({
            "sums": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()}),
            "info": ConfigRecord({"partition-id": self.partition_id, "n-train": self.n_train,
                                  "n-query": self.n_query, "num-classes": self.num_classes,
                                  "embedding-cache": self.embedding_cache}),
            "timings": MetricRecord({k: float(v) for k, v in self.timings.items()}),
        })

    @classmethod
    def from_content(cls, content: RecordDict) -> "SumsReply":
        try:
            rec, info = content["sums"], content["info"]
            return cls(
                partition_id=int(info["partition-id"]), n_train=int(info["n-train"]), n_query=int(info["n-query"]),
                num_classes=int(info["num-classes"]), label_histogram=_array(rec, "label_histogram", "sums"),
                stats={k: v.numpy() for k, v in rec.items() if k != "label_histogram"},
                timings=dict(content["timings"]) if "timings" in content else {},
                embedding_cache=str(info["embedding-cache"]),
            )
        except ProtocolError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"sums: missing or malformed field ({type(err).__name__}: {err})") from None

    def validate(self, limits: Limits, names: tuple[str, ...]) -> None:
        """Every check the server makes before summing; ``names``: the statistics the flow asked for."""
        if self.n_train < 0 or self.n_query < 0:
            raise ProtocolError(f"negative sizes n_train={self.n_train}, n_query={self.n_query}")
        C = self.num_classes
        if C < 1 or (limits.num_classes is not None and C != limits.num_classes):
            raise ProtocolError(f"num_classes {C} differs from the federation's {limits.num_classes}")
        hist = self.label_histogram
        if hist.dtype != np.int64 or hist.shape != (C,) or hist.min(initial=0) < 0 or int(hist.sum()) != self.n_train:
            raise ProtocolError(f"label_histogram: expected {C} non-negative int64 counts summing to "
                                f"n_train={self.n_train}")
        if set(self.stats) != set(names):
            raise ProtocolError(f"sums: expected statistics {', '.join(sorted(names))}; got "
                                f"{', '.join(sorted(self.stats)) or 'none'}")
        d = self.dim() if limits.dim is None else limits.dim
        for name, value in self.stats.items():
            known = _statistic(name)
            if known is None:
                raise ProtocolError(f"sums: unknown statistic {name!r}")
            dtype, axes = known
            shape = tuple({"C": C, "d": d}[a] for a in axes)
            if value.dtype != dtype or value.shape != shape:
                raise ProtocolError(f"sums: {name} must be {np.dtype(dtype).name} of shape {shape} "
                                    f"(C = {C} classes, d = {d} features), got {value.dtype} {value.shape}")
            if not np.isfinite(value).all():
                raise ProtocolError(f"sums: {name} contains NaN or infinite values")
        counts = self.stats.get("counts")
        if counts is not None and not np.array_equal(counts, hist):
            raise ProtocolError("sums: counts differ from the label histogram (the client's training records)")
        held = self.stats.get(HELD_OUT_PREFIX + "counts")
        if held is not None and (held.min(initial=0) < 0 or (counts is not None and (held > counts).any())):
            raise ProtocolError("sums: held-out counts must be non-negative and at most the client's own per class")
        for name in (n for n in self.stats if n.removeprefix(HELD_OUT_PREFIX) == "gram"):
            gram = self.stats[name]
            scale = max(float(np.abs(gram).max(initial=0.0)), 1.0)
            if np.abs(gram - gram.T).max(initial=0.0) > SYMMETRY_TOLERANCE * scale or (np.diag(gram) < 0).any():
                raise ProtocolError(f"sums: {name} is not a Gram matrix (symmetric, non-negative diagonal)")


@dataclass
class UpdateReply:
    """One client's head after local training in one FedAvg / FedProx round (``fedavg_head``),
    in Flower's train-reply layout -- exactly one ArrayRecord (``arrays``: the head's
    parameters, which Flower's FedAvg averages) and one MetricRecord (``metrics``:
    ``num-examples``, the client's weight; without DP also ``train-loss``) -- plus fedsim's
    ``info`` ConfigRecord.

    What the server sees: the parameters after local training -- with DP clipped on the
    client to ``clip_norm`` around the model it was sent and noised there --, the weight (the
    client's record count; 1 for every client with DP), ``n_train`` and the training label
    histogram (not sent with DP), ``n_query``, ``num_classes``, timings and the state of the
    embedding cache; never a record nor a query."""

    partition_id: int
    weights: dict[str, np.ndarray]
    num_examples: int
    n_train: int
    n_query: int
    num_classes: int
    label_histogram: np.ndarray | None = None
    train_loss: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    embedding_cache: str = "off"

    def dim(self) -> int | None:
        """The feature dimension the head's first layer claims (the server fixes one by majority)."""
        first = self.weights.get("hidden.weight", self.weights.get("out.weight"))
        return int(first.shape[1]) if first is not None and first.ndim == 2 else None

    def to_content(self) -> RecordDict:
        metrics: dict[str, float | int] = {"num-examples": int(self.num_examples)}
        if self.train_loss is not None:
            metrics["train-loss"] = float(self.train_loss)
        info: dict[str, Any] = {"partition-id": self.partition_id, "n-train": self.n_train, "n-query": self.n_query,
                                "num-classes": self.num_classes, "embedding-cache": self.embedding_cache,
                                **{f"timing.{k}": float(v) for k, v in self.timings.items()}}
        if self.label_histogram is not None:
            info["label-histogram"] = [int(c) for c in self.label_histogram]
        return RecordDict({
            "arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in self.weights.items()}),
            "metrics": MetricRecord(metrics),
            "info": ConfigRecord(info),
        })

    @classmethod
    def from_content(cls, content: RecordDict) -> "UpdateReply":
        try:
            rec, metrics, info = content["arrays"], content["metrics"], content["info"]
            weight = metrics["num-examples"]
            if isinstance(weight, (list, bool)) or float(weight) != int(weight):
                raise ProtocolError(f"update: num-examples must be a whole number, got {weight!r}")
            return cls(
                partition_id=int(info["partition-id"]), weights={k: v.numpy() for k, v in rec.items()},
                num_examples=int(weight), n_train=int(info["n-train"]), n_query=int(info["n-query"]),
                num_classes=int(info["num-classes"]),
                label_histogram=np.asarray(info["label-histogram"], np.int64) if "label-histogram" in info else None,
                train_loss=float(metrics["train-loss"]) if "train-loss" in metrics else None,
                timings={k[len("timing."):]: float(v) for k, v in info.items() if k.startswith("timing.")},
                embedding_cache=str(info["embedding-cache"]),
            )
        except ProtocolError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"update: missing or malformed field ({type(err).__name__}: {err})") from None

    def validate(self, limits: Limits, shapes: dict[str, tuple[int, ...]], uniform_weight: bool) -> None:
        """Every check the server makes before averaging: the parameters the head has (float32,
        the shapes ``shapes`` names, finite) and the weight -- 1 with ``uniform_weight`` (DP: the
        reply then carries nothing else computed from the records), else the client's record
        count, at most ``federation.max_release_rows``, matching its label histogram."""
        if self.n_train < 0 or self.n_query < 0:
            raise ProtocolError(f"negative sizes n_train={self.n_train}, n_query={self.n_query}")
        C = self.num_classes
        if C < 1 or (limits.num_classes is not None and C != limits.num_classes):
            raise ProtocolError(f"num_classes {C} differs from the federation's {limits.num_classes}")
        if set(self.weights) != set(shapes):
            raise ProtocolError(f"update: expected parameters {', '.join(sorted(shapes))}; got "
                                f"{', '.join(sorted(self.weights)) or 'none'}")
        for name, value in self.weights.items():
            if value.dtype != np.float32 or value.shape != tuple(shapes[name]):
                raise ProtocolError(f"update: {name} must be float32 of shape {tuple(shapes[name])}, got "
                                    f"{value.dtype} {value.shape}")
            if not np.isfinite(value).all():
                raise ProtocolError(f"update: {name} contains NaN or infinite values")
        hist = self.label_histogram
        if uniform_weight:
            if self.num_examples != 1 or self.n_train != 0 or hist is not None or self.train_loss is not None:
                raise ProtocolError("update: with differential privacy the weight must be 1 and the reply may carry no "
                                    "record count, label histogram or training loss (they are not noised)")
            return
        if not 1 <= self.num_examples <= limits.max_rows or self.num_examples != self.n_train:
            raise ProtocolError(f"update: num-examples {self.num_examples} must equal n_train = {self.n_train}, "
                                f"within [1, {limits.max_rows}] (federation.max_release_rows)")
        if hist is None or hist.shape != (C,) or hist.min(initial=0) < 0 or int(hist.sum()) != self.n_train:
            raise ProtocolError(f"label_histogram: expected {C} non-negative counts summing to n_train={self.n_train}")
        if self.train_loss is not None and not np.isfinite(self.train_loss):
            raise ProtocolError("update: train-loss is not finite")


#: the SecAgg+ fit reply's layout (Flower's FitRes); secaggplus_mod masks ``fitres.parameters``
#: and sends the masked vector instead, so only the metrics below travel in clear
SECURE_METRICS = ("partition-id", "n-query", "num-classes", "embedding-cache", "statistics_s", "extract_s")


@dataclass
class SecureEncoding:
    """How an aggregate flow's statistics travel through SecAgg+ (fedsim.strategies.secure).

    SecAgg+ clips every value to +-``clipping_range`` and quantises it to
    ``quantization_range`` levels, then the server gets the MEAN over the n surviving
    clients (weight 1 each).  So each statistic is divided by a public scale,
    ``bound / clipping_range``, where ``bound`` is the largest entry one client's statistic
    can have: ``max_records`` x ``norm`` ** :data:`NORM_POWER` (counts <= records, |sums|,
    |X^T Y| <= records x norm, |X^T X| <= records x norm^2).  Every client and the server
    derive it from the scenario, so they agree without exchanging anything.  A statistic
    above its bound would be clipped silently, so a client refuses to send it."""

    names: tuple[str, ...]
    bounds: dict[str, float]
    clipping_range: float
    quantization_range: int

    @classmethod
    def create(cls, method: AggregateMethod, config: SecureAggregationConfig) -> "SecureEncoding":
        """The encoding of ``method``'s statistics under the scenario's public bounds."""
        norm = method.norm_bound(config.max_norm)
        names = method.statistic_names()
        bounds = {n: float(config.max_records) * norm ** NORM_POWER[n.removeprefix(HELD_OUT_PREFIX)] for n in names}
        return cls(names, bounds, config.clipping_range, config.quantization_range)

    def scale(self, name: str) -> float:
        return self.bounds[name] / self.clipping_range

    def encode(self, stats: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The statistics in ``names`` order, each divided by its scale (float64)."""
        if set(stats) != set(self.names):
            raise ProtocolError(f"secure sums: expected statistics {', '.join(self.names)}, got {', '.join(stats)}")
        out = []
        for name in self.names:
            value = np.asarray(stats[name], np.float64)
            top = float(np.abs(value).max(initial=0.0))
            if top > self.bounds[name]:
                raise ValueError(f"statistic {name} has an entry {top:.4g} above its public bound {self.bounds[name]:.4g} "
                                 "(federation.secure_aggregation.max_records x max_norm^p): more records or longer "
                                 "embeddings than the bounds say; raise them")
            out.append(value / self.scale(name))
        return out

    def decode(self, mean: list[np.ndarray], survivors: int) -> dict[str, np.ndarray]:
        """The SUM over ``survivors`` clients from SecAgg+'s mean: rescaled, counts rounded to
        integers, Gram matrices made symmetric (quantisation noise is not)."""
        if len(mean) != len(self.names):
            raise ProtocolError(f"secure sums: {len(mean)} arrays for {len(self.names)} statistics")
        total = {}
        for name, value in zip(self.names, mean):
            value = np.asarray(value, np.float64) * self.scale(name) * survivors
            base = name.removeprefix(HELD_OUT_PREFIX)
            if base == "counts":
                value = np.rint(value).astype(np.int64)
            elif base == "gram":
                value = (value + value.T) / 2
            total[name] = value
        return total

    def error_bound(self, survivors: int) -> dict[str, float]:
        """The largest error of one entry of a recovered sum: each client's value is off by
        less than one quantisation step, ``2 bound / quantization_range`` (stochastic rounding)."""
        return {n: survivors * 2.0 * b / self.quantization_range for n, b in self.bounds.items()}


@dataclass
class ScoresReply:
    """Client-side scoring: correct predictions per classifier (and per test domain)."""

    partition_id: int
    n_query: int
    correct: dict[str, list[int]]
    infer_s: dict[str, float] = field(default_factory=dict)

    def to_content(self) -> RecordDict:
        return RecordDict({"scores": MetricRecord({
            "partition-id": self.partition_id, "n-query": self.n_query,
            **{f"infer-s.{n}": float(s) for n, s in self.infer_s.items()},
            **{f"correct.{n}.{j}": int(c) for n, per in self.correct.items() for j, c in enumerate(per)}})})

    @classmethod
    def from_content(cls, content: RecordDict) -> "ScoresReply":
        try:
            rec = content["scores"]
            correct: dict[str, dict[int, int]] = {}
            for key, value in rec.items():
                if key.startswith("correct."):
                    name, j = key[len("correct."):].rsplit(".", 1)
                    correct.setdefault(name, {})[int(j)] = int(value)
            return cls(int(rec["partition-id"]), int(rec["n-query"]),
                       {n: [per[j] for j in sorted(per)] for n, per in correct.items()},
                       {k[len("infer-s."):]: float(v) for k, v in rec.items() if k.startswith("infer-s.")})
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"scores: missing or malformed field ({type(err).__name__}: {err})") from None

    def validate(self, classifiers: list[str], n_domains: int, n_query: int | None) -> None:
        if n_query is not None and self.n_query != n_query:
            raise ProtocolError(f"scores: n_query {self.n_query}, the client's release said {n_query}")
        for name in classifiers:
            per = self.correct.get(name)
            if per is None or len(per) != n_domains:
                raise ProtocolError(f"scores: expected {n_domains} count(s) for classifier {name!r}")
            if any(not 0 <= c <= self.n_query for c in per):
                raise ProtocolError(f"scores: counts for {name!r} outside [0, {self.n_query}]")


def error_content(partition_id: int, message: str) -> RecordDict:
    """A client's own error reply (the exception text, first line first)."""
    return RecordDict({"error": ConfigRecord({"partition-id": partition_id, "message": message})})


def reply_error(msg: Message) -> str | None:
    """The failure reason of an error reply (Flower's or the client's own), else None."""
    if msg.has_error():
        return f"Flower error code {msg.error.code}: {msg.error.reason}"
    if "error" in msg.content:
        return str(msg.content["error"]["message"])
    return None


REPLY_TYPES = {"hello": HelloReply, "stats": StatsReply, "release": ReleaseReply, "online": ReleaseReply,
               "evaluate": ScoresReply, "online_evaluate": ScoresReply, "sums": SumsReply,
               "fedavg": UpdateReply}


def decode_reply(msg: Message, phase: str
                 ) -> HelloReply | StatsReply | ReleaseReply | ScoresReply | SumsReply | UpdateReply:
    """The typed reply of ``phase``; :class:`ProtocolError` when fields are missing."""
    return REPLY_TYPES[phase].from_content(msg.content)


def message_bytes(msg: Message) -> dict[str, Any]:
    """What one message carries on the wire: array names, shapes, dtypes and bytes."""
    arrays, total = [], 0
    if msg.has_content():
        content = msg.content
        for rname, rec in content.array_records.items():
            for name, arr in rec.items():
                arrays.append({"name": f"{rname}.{name}", "shape": list(arr.shape), "dtype": str(arr.dtype),
                               "bytes": len(arr.data)})
                total += len(arr.data)
        for rname, rec in [*content.config_records.items(), *content.metric_records.items()]:
            blobs = {k: v for k, v in rec.items() if isinstance(v, bytes)
                     or (isinstance(v, list) and v and isinstance(v[0], bytes))}  # SecAgg+ keys and masked vectors
            total += sum(len(v) if isinstance(v, bytes) else sum(map(len, v)) for v in blobs.values())
            total += len(json.dumps({k: v for k, v in rec.items() if k not in blobs}, default=str))
    return {"arrays": arrays, "bytes": total}
