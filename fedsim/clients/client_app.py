"""Flower ClientApp: answers the server's ``query.release`` with an anonymized release.

``make_client_app(scenario)`` binds a resolved scenario (``run_simulation``);
the module-level ``app`` reads it from ``run_config`` (``flwr run``).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsim.clients.release import build_release
from fedsim.config import scenario_for_run
from fedsim.device import set_threads

log = logging.getLogger(__name__)


def release_message(msg: Message, context: Context, bound: dict[str, Any] | None) -> Message:
    pid = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    try:
        scenario = scenario_for_run(bound, context.run_config)
        set_threads(scenario.federation.client_resources.num_cpus)
        rel = build_release(scenario, pid, num_partitions)
    except Exception as err:  # reported to the server as this client's failure, not a crash
        log.error("client %d failed:\n%s", pid, traceback.format_exc())
        return Message(
            RecordDict({"error": ConfigRecord({"partition-id": pid, "message": f"{type(err).__name__}: {err}"})}),
            reply_to=msg,
        )
    content = RecordDict({
        "release": ArrayRecord({
            "x_train": Array(rel.x_train), "y_train": Array(rel.y_train),
            "x_query": Array(rel.x_query), "y_query": Array(rel.y_query),
        }),
        "info": MetricRecord({
            "partition-id": pid,
            "num-partitions": num_partitions,
            "n-train": rel.n_train,
            "n-query": rel.n_query,
            "label-histogram": [int(c) for c in rel.label_histogram],
            **{k.replace("_", "-"): float(v) for k, v in rel.timings.items()},
        }),
        "status": ConfigRecord({"embedding-cache": rel.embedding_cache}),
    })
    return Message(content, reply_to=msg)


def make_client_app(scenario: dict[str, Any] | None = None) -> ClientApp:
    app = ClientApp()

    @app.query("release")
    def release(msg: Message, context: Context) -> Message:
        return release_message(msg, context, scenario)

    return app


app = make_client_app()
