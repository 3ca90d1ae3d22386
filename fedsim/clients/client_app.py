"""Flower ClientApp: the client side of every message type (see fedsim.protocol).

* ``query.hello``      -- the partition id this node serves (sampled participation);
* ``query.stats``      -- sufficient statistics for a federated transform (pca basis);
* ``train.release``    -- the anonymized training release of one configuration, its own
  privacy/utility measurements and, with server-side evaluation, its transformed queries;
* ``evaluate.release`` -- client-side evaluation: score the own queries with the compact
  models the server shipped; only counts go back;
* ``train.online`` / ``evaluate.online`` -- the same two steps for one online round;
* ``train.sums``       -- the sufficient statistics of an aggregate flow (fed_ncm,
  fed_ridge); the queries stay here and are scored by ``evaluate.release``;
* ``train.fedavg``     -- one FedAvg / FedProx round of fedavg_head: the head trained locally
  from the model sent (fedsim.clients.fedavg); the queries stay here for ``evaluate.release``;
* ``train``            -- the same statistics under SecAgg+ (``federation.secure_aggregation``):
  Flower's ``secaggplus_mod`` answers the protocol's stages and calls the default train
  handler (:func:`secure_sums`) in its collect stage; it acts on type ``train`` only, so
  every other message passes it untouched.

``make_client_app(scenario, key)`` binds a resolved scenario and the federation key
(``fedsim run``: the driver hands the key to this side only); the module-level ``app``
reads both from run_config / node config (``flwr run``, deployment).  An exception becomes
an error reply naming it: the server records the client as failed instead of crashing.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import time
import traceback
from typing import Any, Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp

from fedsim import classifiers
from fedsim.clients import aggregates, faults, fedavg
from fedsim.clients.keys import client_key
from fedsim.clients.node_config import localize, parse_node_config
from fedsim.clients.online import round_release
from fedsim.clients.release import ClientData, Release, anonymize, client_data, shared_statistics
from fedsim.config import Scenario, from_dict, scenario_for_run
from fedsim.device import set_threads
from fedsim.online.replay import REPLAY_SUFFIX
from fedsim.protocol import (MESSAGE_TYPES, SECURE_METRICS, HelloReply, ReleaseReply, Request, ScoresReply,
                             StatsReply, SumsReply, error_content)

log = logging.getLogger(__name__)


SCENARIO_STATE = "fedsim.scenario"


def node_scenario(bound: dict[str, Any] | None, context: Context) -> Scenario:
    """The run's scenario, loaded and validated once per node and run.

    In deployment every message starts a fresh ClientApp process; validating the scenario
    file again in each (it imports Flower Datasets' partitioners: seconds) is not needed,
    so the first message keeps the resolved scenario in ``context.state``, which Flower
    keeps on this SuperNode between messages (it never leaves the node)."""
    if bound is not None:
        return from_dict(bound)
    stored = context.state.get(SCENARIO_STATE)
    if stored is not None and stored.get("run-id") == str(context.run_id):
        return from_dict(json.loads(str(stored["resolved"])))
    scenario = scenario_for_run(None, context.run_config)
    context.state[SCENARIO_STATE] = ConfigRecord({"run-id": str(context.run_id),
                                                  "resolved": json.dumps(scenario.to_dict())})
    return scenario


class Node:
    """One message's view of this client: who it is, its scenario (as this party runs it:
    its node config's data, weights, device), its key."""

    def __init__(self, context: Context, bound: dict[str, Any] | None, key: int | None) -> None:
        self.context = context
        self.config = parse_node_config(context.node_config)
        self.pid = self.config.partition_id
        self.num_partitions = self.config.num_partitions
        scenario = node_scenario(bound, context)
        wanted = scenario.federation.num_clients
        if self.num_partitions != wanted:  # the scenario is the one source of truth
            raise ValueError(f"this node has num-partitions = {self.num_partitions}, the scenario "
                             f"federation.num_clients = {wanted}; start {wanted} SuperNodes (flwr run: "
                             f"--federation-config 'num-supernodes={wanted}')")
        self.scenario: Scenario = localize(scenario, self.config)
        self.key = client_key(key, dict(context.node_config))
        set_threads(self.config.threads or scenario.federation.client_resources.num_cpus)

    def data(self) -> ClientData:
        return client_data(self.scenario, self.pid, self.num_partitions)

    def keep_queries(self, index: int, queries: list[np.ndarray], labels: np.ndarray) -> None:
        """Client-side evaluation scores later, so the transformed queries stay here
        (``context.state`` survives between messages in both runtimes)."""
        self.context.state[f"queries-{index}"] = ArrayRecord(
            {**{f"x.{j}": Array(q) for j, q in enumerate(queries)}, "y": Array(labels)})

    def kept_queries(self, index: int) -> tuple[list[np.ndarray], np.ndarray]:
        stored = self.context.state[f"queries-{index}"]
        n = sum(1 for k in stored if k.startswith("x."))
        return [stored[f"x.{j}"].numpy() for j in range(n)], stored["y"].numpy()


def _shuffled(*arrays: np.ndarray) -> list[np.ndarray]:
    """The rows of every array in one random order drawn from the operating system's
    entropy: a release keeps no trace of the client's row order (its partition's sorted
    dataset indices, which the server can compute), and the order is private to this
    message -- neither the server nor another client can redraw it. The server puts the
    rows in a canonical order, so no result depends on it."""
    order = np.random.default_rng(secrets.randbits(128)).permutation(len(arrays[0]))
    return [a[order] for a in arrays]


def _release_reply(node: Node, req: Request, data: ClientData, rel: Release, queries: list[np.ndarray],
                   extra_timings: dict[str, float], domain: str = "") -> RecordDict:
    if not req.send_queries:
        node.keep_queries(req.index, queries, rel.y_query)
    x_train, y_train = _shuffled(rel.x_train, rel.y_train)
    y_query, *queries = _shuffled(rel.y_query, *queries) if req.send_queries else (None,)
    return ReleaseReply(
        partition_id=node.pid, x_train=x_train, y_train=y_train, n_train=data.n_train,
        n_query=len(rel.y_query), num_classes=len(data.label_histogram),
        label_histogram=np.asarray(data.label_histogram, np.int64),
        y_query=y_query, x_query_domains=list(queries),
        metrics=rel.metrics, timings={**rel.timings, **extra_timings},
        embedding_cache=data.embedding_cache, domain=domain,
    ).to_content()


def hello(node: Node, req: Request) -> RecordDict:
    return HelloReply(node.pid).to_content()


def stats(node: Node, req: Request) -> RecordDict:
    return StatsReply(node.pid, shared_statistics(node.scenario, node.data(), req.method, req.params)).to_content()


def release(node: Node, req: Request) -> RecordDict:
    data = node.data()
    rel = anonymize(node.scenario, data, req.method, req.params, req.arrays.get("shared"), key=node.key)
    return _release_reply(node, req, data, rel, [rel.x_query], {"extract_s": data.timings["extract_s"]})


def online(node: Node, req: Request) -> RecordDict:
    """One online round: the release of this round's new records (in the round's domain)."""
    rel, queries, info = round_release(node.scenario, node.pid, node.num_partitions, req.method, req.params,
                                       req.round, req.batch_size, node.key)
    data = client_data(node.scenario, node.pid, node.num_partitions, progress=False)
    return _release_reply(node, req, data, rel, list(queries.values()), {"extract_s": info["extract_s"]},
                          domain=info["domain"])


def sums(node: Node, req: Request) -> RecordDict:
    """An aggregate flow's statistics; the queries (in the model's input space) stay here."""
    data = node.data()
    stats, queries, timings = aggregates.statistics(node.scenario, data, req.method, req.params, node.key)
    node.keep_queries(req.index, [queries], data.y_query)
    return SumsReply(partition_id=node.pid, n_train=data.n_train, n_query=data.n_query,
                     num_classes=len(data.label_histogram), label_histogram=np.asarray(data.label_histogram, np.int64),
                     stats=stats, timings=timings, embedding_cache=data.embedding_cache).to_content()


def fedavg_round(node: Node, req: Request) -> RecordDict:
    """One FedAvg / FedProx round of fedavg_head: the head trained on this client's
    embeddings from the model sent; the queries stay here."""
    data = node.data()
    node.keep_queries(req.index, [data.x_query], data.y_query)
    return fedavg.local_update(node.scenario, data, req, node.key).to_content()


def _unfitted(node: Node, req: Request, name: str) -> classifiers.Classifier:
    """A model to restore a shipped state into: the aggregate flow's (fedavg_head's head),
    else the scenario's classifier."""
    if aggregates.is_aggregate(req.method):
        return aggregates.model(req.method, req.params)
    if req.method == fedavg.METHOD:
        return fedavg.model(req.params)
    base = name.removesuffix(REPLAY_SUFFIX)
    return classifiers.create(base, **node.scenario.classifiers[base])


def evaluate(node: Node, req: Request) -> RecordDict:
    """Score the shipped models on this client's queries (every test domain); counts only."""
    queries, labels = node.kept_queries(req.index)
    correct, seconds = {}, {}
    for name, state in req.classifier_states().items():
        clf = _unfitted(node, req, name).set_state(state)
        t0 = time.perf_counter()
        correct[name] = classifiers.count_correct(clf, queries, labels)
        seconds[name] = time.perf_counter() - t0
    return ScoresReply(node.pid, int(len(labels)), correct, seconds).to_content()


HANDLERS: dict[str, Callable[[Node, Request], RecordDict]] = {
    "hello": hello, "stats": stats, "release": release, "evaluate": evaluate, "online": online,
    "online_evaluate": evaluate, "sums": sums, "fedavg": fedavg_round}


def handle(phase: str, bound: dict[str, Any] | None, key: int | None, msg: Message, context: Context) -> Message:
    """Decode, inject a configured fault (tests), run the phase's handler, encode the reply."""
    pid = context.node_config.get("partition-id", -1)
    pid = pid if isinstance(pid, int) else -1  # a bad node config is reported by Node below
    try:
        node = Node(context, bound, key)
        req = Request.from_message(msg)
        fault = faults.find(node.scenario, pid, phase, req.index, req.round)
        faults.before(fault, node.scenario)
        content = faults.corrupt(HANDLERS[phase](node, req), fault)
    except Exception as err:
        log.error("client %d failed in %s:\n%s", pid, phase, traceback.format_exc())
        return Message(error_content(pid, f"{type(err).__name__}: {err}"), reply_to=msg)
    return Message(content, reply_to=msg)


def secure_sums(bound: dict[str, Any] | None, key: int | None, msg: Message, context: Context) -> Message:
    """SecAgg+'s collect stage: this client's statistics, scaled, in Flower's FitRes layout;
    secaggplus_mod quantises and masks ``fitres.parameters`` and sends only that, plus the
    clear-text metrics (:data:`fedsim.protocol.SECURE_METRICS`: never a statistic).  An
    exception is Flower's error reply: SecAgg+ counts the client as dropped."""
    node = Node(context, bound, key)
    req = Request.from_message(msg, "fitins.config")
    faults.before(faults.find(node.scenario, node.pid, "secure_sums", req.index, req.round), node.scenario)
    data = node.data()
    arrays, queries, timings = aggregates.secure_statistics(node.scenario, data, req.method, req.params, node.key)
    node.keep_queries(req.index, [queries], data.y_query)
    values = [node.pid, data.n_query, len(data.label_histogram), data.embedding_cache, timings["statistics_s"],
              timings["extract_s"]]
    return Message(RecordDict({
        "fitres.parameters": ArrayRecord({str(i): Array(a) for i, a in enumerate(arrays)}),
        "fitres.num_examples": MetricRecord({"num_examples": 1}),  # weight 1: SecAgg+ averages over clients
        "fitres.metrics": ConfigRecord(dict(zip(SECURE_METRICS, values))),
        "fitres.status": ConfigRecord({"code": 0, "message": "ok"}),
    }), reply_to=msg)


def make_client_app(scenario: dict[str, Any] | None = None, key: int | None = None) -> ClientApp:
    app = ClientApp(mods=[secaggplus_mod])
    for phase in HANDLERS:
        category, action = MESSAGE_TYPES[phase].split(".")
        register = {"query": app.query, "train": app.train, "evaluate": app.evaluate}[category]
        register(action)(functools.partial(handle, phase, scenario, key))
    app.train()(functools.partial(secure_sums, scenario, key))
    return app


app = make_client_app()
