"""What every fedsim server flow shares: a Flower ``Strategy`` bound to one anonymizer
configuration, the federation state, and evaluation (server-side on the clients'
transformed queries, or client-side with compact models).

A flow is a subclass of :class:`FedsimStrategy` that implements Flower's
``configure_train`` / ``aggregate_train`` (and, for client-side evaluation,
``configure_evaluate`` / ``aggregate_evaluate`` come from here); the ServerApp runs it
with Flower's own ``Strategy.start`` loop for ``num_rounds`` rounds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim import anonymizers, classifiers
from fedsim.config import Scenario
from fedsim.labels import config_label
from fedsim.online.replay import REPLAY_SUFFIX
from fedsim.protocol import Limits, ProtocolError, ReleaseReply, Request, ScoresReply
from fedsim.strategies.federation import Federation, majority
from fedsim.strategies.participation import RoundPlan

log = logging.getLogger(__name__)


@dataclass
class ClientOutcome:
    """What the server learned about one client in one configuration."""

    partition_id: int
    n_train: int
    n_query: int
    num_classes: int
    label_histogram: list[int]
    embedding_cache: str
    n_released: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Scores:
    """Correct predictions per client, classifier and test domain (server- or client-side)."""

    n_query: dict[int, int] = field(default_factory=dict)
    correct: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    infer_s: dict[int, dict[str, float]] = field(default_factory=dict)

    def add(self, pid: int, n: int, correct: dict[str, list[int]], infer_s: dict[str, float]) -> None:
        self.n_query[pid], self.correct[pid], self.infer_s[pid] = n, correct, infer_s


def canonical_order(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A release's rows sorted by (label, then every coordinate): clients shuffle their rows
    with private randomness, so the server fixes an order that depends only on what it
    received -- and every classifier (fc's SGD included) sees the same pool in every run."""
    if len(y) < 2:
        return x, y
    order = np.lexsort([*x.T[::-1], y])
    return x[order], y[order]


def score_on_server(models: dict[str, Any], queries: dict[int, tuple[list[np.ndarray], np.ndarray]]) -> Scores:
    """Every model on every client's transformed queries, per test domain.

    All clients' queries of a domain are predicted in ONE call and the hits split per
    client (1,000 clients: one kNN search instead of 1,000); each client's ``infer_s`` is
    the call's seconds apportioned by its share of the queries, so they sum to the
    server's scoring time."""
    scores = Scores()
    pids = sorted(queries)
    if not pids:
        return scores
    sizes = [len(queries[p][1]) for p in pids]
    bounds, total = np.cumsum([0, *sizes]), max(sum(sizes), 1)
    labels = np.concatenate([queries[p][1] for p in pids])
    n_domains = len(queries[pids[0]][0])
    correct: dict[int, dict[str, list[int]]] = {p: {} for p in pids}
    seconds: dict[int, dict[str, float]] = {p: {} for p in pids}
    for name, clf in models.items():
        t0 = time.perf_counter()
        hits = [clf.predict(np.concatenate([queries[p][0][j] for p in pids])) == labels if len(labels)
                else np.zeros(0, bool) for j in range(n_domains)]
        elapsed = time.perf_counter() - t0
        for i, p in enumerate(pids):
            correct[p][name] = [int(h[bounds[i]:bounds[i + 1]].sum()) for h in hits]
            seconds[p][name] = elapsed * sizes[i] / total
    for i, p in enumerate(pids):
        scores.add(p, sizes[i], correct[p], seconds[p])
    return scores


class FedsimStrategy(Strategy):
    """One configuration (an anonymizer's, or an aggregate flow's) run as Flower rounds.

    ``evaluation = "server"``: release replies carry the transformed queries and
    ``aggregate_train`` scores them (``configure_evaluate`` sends nothing).
    ``evaluation = "client"``: ``configure_evaluate`` ships the compact models -- and the
    kNN pool only with ``share_pool_with_clients`` -- and clients return counts."""

    #: Flower rounds this strategy runs (set by subclasses)
    num_rounds = 1
    #: test domains scored per round
    n_domains = 1
    release_phase = "release"
    evaluate_phase = "evaluate"
    #: where scoring happens whatever ``federation.evaluation`` says (None: as it says)
    evaluation: str | None = None

    @classmethod
    def plan(cls, scenario: Scenario) -> list[tuple[str, dict[str, Any], str, dict[str, Any]]]:
        """(method, parameters, label, extra constructor arguments) of every run of this flow."""
        return [(m, p, config_label(m, p), {}) for m, p in scenario.anonymizer_grid()]

    @classmethod
    def check(cls, scenario: Scenario) -> None:
        """Cross-checks of this flow against the rest of the scenario, before any work (a
        ValueError says what is wrong)."""

    def __init__(self, fed: Federation, scenario: Scenario, index: int, method: str, params: dict[str, Any],
                 label: str | None = None) -> None:
        self.fed, self.scenario, self.index, self.method, self.params = fed, scenario, index, method, dict(params)
        self.label = label or config_label(method, params)
        fd = scenario.federation
        self.mode = self.evaluation or fd.evaluation
        anon = self.anonymizer()
        self.queries_in_clear = (anon is not None and self.mode == "server" and anon.queries_in_clear()
                                 and method != "none")
        self.limits = Limits(max_rows=fd.max_release_rows, num_classes=fed.num_classes,
                             **({"release_rows": anon.max_release_rows} if anon is not None else {}))
        self.outcomes: dict[int, ClientOutcome] = {}
        self.failures_before = len(fed.failures)
        self.not_evaluated: dict[str, str] = {}
        self.t_collect = 0.0
        self._t_sent = 0.0
        self.round_plan: RoundPlan | None = None
        self.took_part: list[int] | None = None  # this round's participants (None: every client still in)
        self.participation: list[dict[str, Any]] = []
        if self.queries_in_clear:
            log.warning("%s: server-side evaluation shows the server the clients' query embeddings unchanged "
                        "(the method does not transform queries); evaluation = \"client\" keeps them local", self.label)

    def anonymizer(self) -> Any | None:
        """The configuration's anonymizer (its parameters; each client fits its own), None
        for a flow whose clients release no records."""
        return anonymizers.create(self.method, **self.params)

    def classifier_names(self) -> list[str]:
        """The classifiers this flow fits (results are keyed by them)."""
        return list(self.scenario.classifiers)

    # -- what the server asks -------------------------------------------------------------
    def request(self, phase: str, server_round: int, **kw: Any) -> Request:
        return Request(phase=phase, index=self.index, method=self.method, params=self.params,
                       round=server_round - 1, send_queries=self.mode == "server", **kw)

    def begin_round(self, server_round: int) -> list[int] | None:
        """Draw the round's participants; the partition ids to ask (None: every client still in)."""
        self.round_plan = self.fed.plan(server_round - 1)
        self.took_part = None
        return self.round_plan.asked if self.round_plan else None

    def send(self, request: Request, pids: Iterable[int] | None = None) -> list[Message]:
        self._t_sent = time.perf_counter()
        return self.fed.messages(request, pids)

    def late(self) -> list[int]:
        return self.round_plan.late if self.round_plan else []

    # -- replies ----------------------------------------------------------------------------
    def accept_round(self, replies: Iterable[Message], server_round: int, phase: str,
                     dim_of: Callable[[Any], int | None], check: Callable[[Any], None]) -> list[Any]:
        """Validated replies of one round (releases or statistics), in partition order; fixes
        the feature dimension (``dim_of`` a reply) and the class count by majority of the
        replies so that one client cannot impose its own, then runs ``check`` on each;
        records every client's outcome and the round's participation."""
        replies = list(replies)
        self.t_collect += time.perf_counter() - self._t_sent
        failed_before = len(self.fed.failures)
        decoded = self.fed.accept(replies, phase, self.index, server_round - 1, late=self.late())
        dims = [(r.partition_id, d) for r in decoded.values() if (d := dim_of(r)) is not None]
        self.limits.dim = self.limits.dim or majority(dims)
        if self.fed.num_classes is None:
            self.fed.num_classes = majority((r.partition_id, r.num_classes) for r in decoded.values())
        self.limits.num_classes = self.fed.num_classes
        ok: list[Any] = []
        for node, reply in decoded.items():
            try:
                check(reply)
            except ProtocolError as err:
                self.fed.fail(node, phase, self.index, server_round - 1, f"invalid reply: {err}")
                continue
            ok.append(reply)
        self.fed.require_quorum(f"{self.label}: {phase} round {server_round}")
        hits = [r.partition_id for r in ok if r.embedding_cache == "hit"]
        if self.index == 0 and server_round == 1 and hits:
            log.info("clients %s reused cached embeddings (no extraction)", ", ".join(map(str, hits)))
        for r in ok:
            self.outcomes.setdefault(r.partition_id, ClientOutcome(
                r.partition_id, r.n_train, r.n_query, r.num_classes,
                r.label_histogram.tolist() if r.label_histogram is not None else [], r.embedding_cache))
        if self.round_plan is not None:
            self.took_part = [r.partition_id for r in ok]
            failed = [f["client"] for f in self.fed.failures[failed_before:]]
            self.participation.append(self.round_plan.record(self.took_part, failed))
        return ok

    def accept_releases(self, replies: Iterable[Message], server_round: int) -> list[ReleaseReply]:
        """Validated releases, in partition order, their rows in canonical order."""
        def dim_of(rel: ReleaseReply) -> int | None:
            return rel.x_train.shape[1] if rel.x_train.ndim == 2 and len(rel.x_train) else None

        def check(rel: ReleaseReply) -> None:
            rel.validate(self.limits, want_queries=self.mode == "server", n_domains=self.n_domains)

        ok = self.accept_round(replies, server_round, self.release_phase, dim_of, check)
        for rel in ok:
            rel.x_train, rel.y_train = canonical_order(rel.x_train, rel.y_train)
            self.outcomes[rel.partition_id].n_released += len(rel.y_train)
        return ok

    # -- evaluation -------------------------------------------------------------------------
    def shippable(self, models: dict[str, Any]) -> dict[str, Any]:
        """The models client-side evaluation may ship; the others are recorded as not evaluated."""
        share = self.scenario.federation.share_pool_with_clients
        out = {}
        for name, clf in models.items():
            if clf.state_holds_records and not share:
                self.not_evaluated[name] = ("client-side evaluation would ship every client's release to each "
                                            "client; set federation.share_pool_with_clients = true to allow it")
            else:
                out[name] = clf
        return out

    def evaluate_request(self, server_round: int, models: dict[str, Any]) -> list[Message]:
        if self.mode != "client":
            return []
        states = {f"classifier.{n}": clf.get_state() for n, clf in self.shippable(models).items()}
        if not states:
            return []
        return self.send(self.request(self.evaluate_phase, server_round, arrays=states), self.took_part)

    def accept_scores(self, replies: Iterable[Message], server_round: int, names: list[str]) -> Scores:
        scores = Scores()

        def check(reply: ScoresReply) -> None:
            known = self.outcomes.get(reply.partition_id)
            reply.validate(names, self.n_domains, known.n_query if known else None)

        for rep in self.fed.accept(replies, self.evaluate_phase, self.index, server_round - 1, check).values():
            scores.add(rep.partition_id, rep.n_query, rep.correct, rep.infer_s)
        return scores

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.evaluate_request(server_round, self.models())

    def models(self) -> dict[str, Any]:
        """The fitted classifiers of the current round, by name."""
        raise NotImplementedError

    def summary(self) -> None:
        log.info("%s: %s strategy, %d round(s), evaluation on the %s, %d clients", self.label,
                 type(self).__name__, self.num_rounds, self.mode, len(self.fed.active))

    def failures(self) -> list[dict[str, Any]]:
        return self.fed.failures[self.failures_before:]

    def evaluation_info(self) -> dict[str, Any]:
        return {"mode": self.mode, "queries_in_clear": self.queries_in_clear,
                "pool_shared_with_clients": self.mode == "client" and self.scenario.federation.share_pool_with_clients
                and any(classifiers.REGISTRY.get(n.removesuffix(REPLAY_SUFFIX)).state_holds_records
                        for n in self.classifier_names()),
                "not_evaluated": dict(self.not_evaluated)}

    @staticmethod
    def metrics(values: dict[str, float]) -> MetricRecord:
        return MetricRecord({k: float(v) for k, v in values.items() if v == v})
