"""Flower ClientApp: the client side of every message type.

* ``query.stats``    -- sufficient statistics for a shared keyed transform (pca basis);
* ``query.release``  -- the anonymized training release of one configuration + its own
  privacy/utility metrics; the transformed queries stay on the client (``context.state``);
* ``query.evaluate`` -- score those queries with the classifiers the server fitted on the
  pooled releases; only counts go back, so query embeddings never leave the client;
* ``query.online`` / ``query.online_evaluate`` -- the same two steps for one online round:
  the release of the round's new records, then scores in every test domain.

``make_client_app(scenario)`` binds a resolved scenario (``run_simulation``); the
module-level ``app`` reads it from ``run_config`` (``flwr run``).  Exceptions become a
structured error reply: the server reports the client as failed instead of crashing.
"""

from __future__ import annotations

import functools
import json
import logging
import traceback
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsim.clients.release import anonymize, client_data, shared_statistics
from fedsim.config import scenario_for_run
from fedsim.device import set_threads
from fedsim.online.client import round_release, score_domains
from fedsim.strategies.pooled import score_locally

log = logging.getLogger(__name__)


def _error_reply(msg: Message, pid: int, err: Exception) -> Message:
    log.error("client %d failed:\n%s", pid, traceback.format_exc())
    return Message(
        RecordDict({"error": ConfigRecord({"partition-id": pid, "message": f"{type(err).__name__}: {err}"})}),
        reply_to=msg,
    )


def _setup(msg: Message, context: Context, bound: dict[str, Any] | None):
    scenario = scenario_for_run(bound, context.run_config)
    set_threads(scenario.federation.client_resources.num_cpus)
    pid = int(context.node_config["partition-id"])
    data = client_data(scenario, pid, int(context.node_config["num-partitions"]))
    cfg = msg.content["config"]
    return scenario, data, str(cfg["method"]), json.loads(str(cfg["params"]))


def stats_message(msg: Message, context: Context, bound: dict[str, Any] | None) -> Message:
    pid = int(context.node_config["partition-id"])
    try:
        scenario, data, method, params = _setup(msg, context, bound)
        stats = shared_statistics(scenario, data, method, params)
    except Exception as err:
        return _error_reply(msg, pid, err)
    return Message(RecordDict({
        "stats": ArrayRecord({k: Array(v) for k, v in stats.items()}),
        "info": MetricRecord({"partition-id": pid}),
    }), reply_to=msg)


def release_message(msg: Message, context: Context, bound: dict[str, Any] | None) -> Message:
    pid = int(context.node_config["partition-id"])
    try:
        scenario, data, method, params = _setup(msg, context, bound)
        shared = ({k: v.numpy() for k, v in msg.content["shared"].items()} if "shared" in msg.content else None)
        rel = anonymize(scenario, data, method, params, shared)
    except Exception as err:
        return _error_reply(msg, pid, err)
    # kept for query.evaluate; context.state survives between messages in both runtimes
    context.state[f"queries-{int(msg.content['config']['index'])}"] = ArrayRecord(
        {"x": Array(rel.x_query), "y": Array(rel.y_query)})
    return _release_reply(msg, context, data, rel)


def online_message(msg: Message, context: Context, bound: dict[str, Any] | None) -> Message:
    """One online round: the release of this round's new records (in the round's domain)."""
    pid = int(context.node_config["partition-id"])
    try:
        scenario, data, method, params = _setup(msg, context, bound)
        cfg = msg.content["config"]
        rel, queries, info = round_release(scenario, pid, int(context.node_config["num-partitions"]), method,
                                           params, int(cfg["round"]), int(cfg["batch-size"]))
    except Exception as err:
        return _error_reply(msg, pid, err)
    context.state[f"online-queries-{int(cfg['index'])}"] = ArrayRecord(
        {**{f"x.{j}": Array(q) for j, q in enumerate(queries.values())}, "y": Array(rel.y_query)})
    reply = _release_reply(msg, context, data, rel)
    reply.content["status"]["domain"] = info["domain"]
    return reply


def _release_reply(msg: Message, context: Context, data: Any, rel: Any) -> Message:
    pid = int(context.node_config["partition-id"])
    return Message(RecordDict({
        "release": ArrayRecord({"x_train": Array(rel.x_train), "y_train": Array(rel.y_train)}),
        "info": MetricRecord({
            "partition-id": pid,
            "num-partitions": int(context.node_config["num-partitions"]),
            "n-train": data.n_train,
            "n-query": data.n_query,
            "label-histogram": [int(c) for c in data.label_histogram],
            "extract-s": float(data.timings["extract_s"]),
            **{k.replace("_", "-"): float(v) for k, v in rel.timings.items()},
        }),
        "metrics": MetricRecord({k: float(v) for k, v in rel.metrics.items()}),
        "status": ConfigRecord({"embedding-cache": data.embedding_cache}),
    }), reply_to=msg)


def _classifier_states(msg: Message) -> dict[str, dict[str, np.ndarray]]:
    """The fitted classifiers the server shipped, by name."""
    return {name[len("classifier."):]: {k: v.numpy() for k, v in rec.items()}
            for name, rec in msg.content.array_records.items() if name.startswith("classifier.")}


def evaluate_message(msg: Message, context: Context, bound: dict[str, Any] | None) -> Message:
    pid = int(context.node_config["partition-id"])
    try:
        scenario = scenario_for_run(bound, context.run_config)
        set_threads(scenario.federation.client_resources.num_cpus)
        index = int(msg.content["config"]["index"])
        stored = context.state[f"queries-{index}"]
        queries, labels = stored["x"].numpy(), stored["y"].numpy()
        states = _classifier_states(msg)
        correct = score_locally(states, scenario.classifiers, queries, labels)
    except Exception as err:
        return _error_reply(msg, pid, err)
    return Message(RecordDict({
        "scores": MetricRecord({"partition-id": pid, "n-query": int(len(labels)),
                                **{f"correct.{k}": v for k, v in correct.items()}}),
    }), reply_to=msg)


def online_evaluate_message(msg: Message, context: Context, bound: dict[str, Any] | None) -> Message:
    """Score the server's classifiers on this client's queries in every test domain."""
    pid = int(context.node_config["partition-id"])
    try:
        scenario = scenario_for_run(bound, context.run_config)
        set_threads(scenario.federation.client_resources.num_cpus)
        stored = context.state[f"online-queries-{int(msg.content['config']['index'])}"]
        labels = stored["y"].numpy()
        queries = {k: v.numpy() for k, v in stored.items() if k.startswith("x.")}
        queries = {j: queries[f"x.{j}"] for j in range(len(queries))}
        states = _classifier_states(msg)
        correct, seconds = score_domains(states, scenario.classifiers, queries, labels)
    except Exception as err:
        return _error_reply(msg, pid, err)
    return Message(RecordDict({
        "scores": MetricRecord({"partition-id": pid, "n-query": int(len(labels)),
                                **{f"infer-s.{name}": s for name, s in seconds.items()},
                                **{f"correct.{name}.{j}": c for name, per in correct.items() for j, c in per.items()}}),
    }), reply_to=msg)


HANDLERS = {"stats": stats_message, "release": release_message, "evaluate": evaluate_message,
            "online": online_message, "online_evaluate": online_evaluate_message}


def make_client_app(scenario: dict[str, Any] | None = None) -> ClientApp:
    app = ClientApp()
    for action, handler in HANDLERS.items():
        app.query(action)(functools.partial(_bound, handler, scenario))
    return app


def _bound(handler, scenario: dict[str, Any] | None, msg: Message, context: Context) -> Message:
    return handler(msg, context, scenario)


app = make_client_app()
