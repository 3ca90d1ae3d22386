"""Flower ServerApp: ask every client for its release, pool, fit classifiers, score, write results.

``make_server_app(scenario, run_dir)`` is used by :mod:`fedsim.simulation`; the
module-level ``app`` serves ``flwr run .`` and writes its own run folder.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedsim import __version__
from fedsim.config import Scenario, scenario_for_run
from fedsim.report.results import RunFolder, write_json
from fedsim.strategies.pooled import ClientRelease, evaluate_pooled

log = logging.getLogger(__name__)


def wait_for_nodes(grid: Grid, wanted: int, timeout: float) -> list[int]:
    """Node ids once ``wanted`` nodes are connected; a finite wait (deployment nodes join late)."""
    deadline = time.monotonic() + timeout
    while len(ids := sorted(grid.get_node_ids())) < wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"only {len(ids)} of {wanted} clients (federation.num_clients) connected within "
                f"{timeout:.0f}s; under flwr run pass --federation-config 'num-supernodes={wanted}'"
            )
        time.sleep(0.2)
    return ids


def parse_replies(replies: list[Message], node_ids: list[int]) -> tuple[list[ClientRelease], list[dict[str, Any]]]:
    """Split replies into releases and failures; a silent node is a failure too."""
    releases, failures = [], []
    answered = set()
    for reply in replies:
        node = reply.metadata.src_node_id
        answered.add(node)
        if reply.has_error():
            failures.append({"id": None, "node_id": node, "error": f"code {reply.error.code}: {reply.error.reason}"})
            continue
        if "error" in reply.content:
            err = reply.content["error"]
            failures.append({"id": int(err["partition-id"]), "node_id": node, "error": str(err["message"])})
            continue
        arrays, info = reply.content["release"], dict(reply.content["info"])
        info["embedding-cache"] = str(reply.content["status"]["embedding-cache"]) if "status" in reply.content else "off"
        releases.append(ClientRelease(
            partition_id=int(info["partition-id"]),
            x_train=arrays["x_train"].numpy(), y_train=arrays["y_train"].numpy(),
            x_query=arrays["x_query"].numpy(), y_query=arrays["y_query"].numpy(),
            info=dict(info),
        ))
    for node in node_ids:
        if node not in answered:
            failures.append({"id": None, "node_id": node, "error": "no reply before the round timeout"})
    releases.sort(key=lambda r: r.partition_id)
    return releases, failures


def run_server(grid: Grid, scenario: Scenario) -> dict[str, Any]:
    """One collaboration round; returns the results.json document."""
    fed = scenario.federation
    t_start = time.perf_counter()
    node_ids = wait_for_nodes(grid, fed.num_clients, timeout=min(fed.round_timeout, 300.0))
    messages = [
        Message(RecordDict({"config": ConfigRecord({"round": 1})}), message_type="query.release",
                dst_node_id=node, group_id="release-1")
        for node in node_ids
    ]
    t0 = time.perf_counter()
    replies = list(grid.send_and_receive(messages, timeout=fed.round_timeout))
    t_collect = time.perf_counter() - t0
    releases, failures = parse_replies(replies, node_ids)
    hits = [r.partition_id for r in releases if r.info["embedding-cache"] == "hit"]
    if hits:
        log.info("clients %s reused cached embeddings (no extraction)", ", ".join(map(str, hits)))
    for f in failures:
        log.error("client %s (node %s) failed: %s", f["id"], f["node_id"], f["error"].splitlines()[0] if f["error"] else "")
    if not releases:
        raise RuntimeError(f"all {len(node_ids)} clients failed; first error: {failures[0]['error']}")
    accuracy, per_client, clf_timings = evaluate_pooled(releases, scenario.classifiers)
    clients = [
        {
            "id": r.partition_id,
            "status": "ok",
            "n_train": int(r.info["n-train"]),
            "n_query": int(r.info["n-query"]),
            "n_released": int(len(r.y_train)),
            "label_histogram": [int(c) for c in r.info["label-histogram"]],
            "accuracy": per_client[r.partition_id],
            "timings": {"extract_s": float(r.info["extract-s"]), "anonymize_s": float(r.info["anonymize-s"])},
            "embedding_cache": r.info["embedding-cache"],
        }
        for r in releases
    ]
    clients += [{"id": f["id"], "status": "failed", "node_id": f["node_id"], "error": f["error"]} for f in failures]
    (anonymizer, anon_params), = scenario.anonymizers.items()
    return {
        "fedsim_version": __version__,
        "scenario": scenario.name,
        "seed": scenario.seed,
        "engine": fed.engine,
        "dataset": scenario.data.dataset,
        "partition": scenario.partition.method,
        "extractor": scenario.extractor.name,
        "anonymizer": {"method": anonymizer, "params": anon_params},
        "num_clients": fed.num_clients,
        "num_failed": len(failures),
        "clients": clients,
        "accuracy": accuracy,
        "timings": {
            "collect_s": t_collect,
            "classifiers": clf_timings,
            "server_total_s": time.perf_counter() - t_start,
        },
    }


def make_server_app(scenario: dict[str, Any] | None = None, run_dir: str | Path | None = None) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        resolved = scenario_for_run(scenario, context.run_config)
        if run_dir is not None:
            write_json(Path(run_dir) / "results.json", run_server(grid, resolved))
            return
        # flwr run: no launcher around us, so this app owns the run folder.
        out = Path(str(context.run_config.get("output-dir", resolved.output_dir))).resolve()
        with RunFolder(out, resolved.name, resolved.to_dict()) as folder:
            results = run_server(grid, resolved)
            results["engine"] = "flwr-run"
            write_json(folder.path / "results.json", results)
        log.info("results written to %s", folder.final_path)

    return app


app = make_server_app()
