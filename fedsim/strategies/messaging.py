"""Server-side messaging: send ``query.<kind>`` messages, wait finitely, and split the
replies into results and structured failures (a failed client never crashes the run)."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedsim.strategies.pooled import ClientRelease


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


def failure_of(reply: Message) -> dict[str, Any] | None:
    """A structured failure for an error reply (Flower's or the client's own), else None."""
    node = reply.metadata.src_node_id
    if reply.has_error():
        return {"id": None, "node_id": node, "error": f"code {reply.error.code}: {reply.error.reason}"}
    if "error" in reply.content:
        err = reply.content["error"]
        return {"id": int(err["partition-id"]), "node_id": node, "error": str(err["message"])}
    return None


def silent(node_ids: list[int], replies: list[Message]) -> list[dict[str, Any]]:
    """Nodes that did not answer before the timeout, as failures."""
    answered = {r.metadata.src_node_id for r in replies}
    return [{"id": None, "node_id": n, "error": "no reply before the round timeout"} for n in node_ids if n not in answered]


def parse_replies(replies: list[Message], node_ids: list[int]) -> tuple[list[ClientRelease], list[dict[str, Any]]]:
    """Split release replies into releases and failures; a silent node is a failure too."""
    releases, failures = [], []
    for reply in replies:
        failure = failure_of(reply)
        if failure is not None:
            failures.append(failure)
            continue
        arrays, info = reply.content["release"], dict(reply.content["info"])
        info["embedding-cache"] = str(reply.content["status"]["embedding-cache"]) if "status" in reply.content else "off"
        metrics = dict(reply.content["metrics"]) if "metrics" in reply.content else {}
        releases.append(ClientRelease(
            partition_id=int(info["partition-id"]), x_train=arrays["x_train"].numpy(),
            y_train=arrays["y_train"].numpy(), info=info, metrics=metrics,
        ))
    failures += silent(node_ids, replies)
    releases.sort(key=lambda r: r.partition_id)
    return releases, failures


def ask(grid: Grid, node_ids: list[int], kind: str, index: int, method: str, params: dict[str, Any],
        timeout: float, arrays: dict[str, dict[str, np.ndarray]] | None = None,
        extra: dict[str, Any] | None = None) -> list[Message]:
    """Send one ``query.<kind>`` message per node and wait (finitely) for the replies."""
    config = {"index": index, "method": method, "params": json.dumps(params), **(extra or {})}
    content: dict[str, Any] = {"config": ConfigRecord(config)}
    for name, record in (arrays or {}).items():
        content[name] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in record.items()})
    messages = [Message(RecordDict(content), message_type=f"query.{kind}", dst_node_id=node,
                        group_id=f"{kind}-{index}-{config.get('round', 0)}") for node in node_ids]
    return list(grid.send_and_receive(messages, timeout=timeout))


def collect_records(replies: list[Message], node_ids: list[int], record: str
                    ) -> tuple[list[Any], list[dict[str, Any]]]:
    """The ``record`` of every successful reply, and the failures (errors and silent nodes)."""
    records, failures = [], silent(node_ids, replies)
    for reply in replies:
        failure = failure_of(reply)
        if failure is None:
            records.append(reply.content[record])
        else:
            failures.append(failure)
    return records, failures
