"""What crossed the wire: every message the server sent and every reply it received.

:class:`AuditedGrid` wraps Flower's ``Grid`` (so Flower's own ``Strategy.start`` loop is
audited too) and records, per message: configuration index, round, phase, direction,
node, array names, shapes, dtypes and bytes -- and, on request, the arrays the server
received.  The records become ``results["traffic"]`` (bytes per client, message type and
round) and, with ``[audit] messages = true`` (``fedsim run --audit``), ``audit.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.serverapp import Grid

from fedsim.protocol import message_bytes


def _request_fields(msg: Message, scope: dict[str, Any]) -> dict[str, Any]:
    """(phase, configuration index, round) of a request: from fedsim's ``config`` record, or
    for Flower's SecAgg+ messages (which carry none) ``secagg.<stage>`` and the ``scope``."""
    content = msg.content if msg.has_content() else {}
    if "config" not in content and RECORD_KEY_CONFIGS in content:
        return {"phase": f"secagg.{content[RECORD_KEY_CONFIGS][Key.STAGE]}", "index": int(scope.get("index", 0)),
                "round": int(scope.get("round", 0))}
    cfg = content["config"] if "config" in content else {}
    return {"phase": str(cfg.get("phase", msg.metadata.message_type)), "index": int(cfg.get("index", 0)),
            "round": int(cfg.get("round", 0))}


def _received_arrays(msg: Message) -> dict[str, np.ndarray]:
    """Every array of a reply, SecAgg+'s masked vectors (bytes in a config record) included."""
    arrays = {f"{r}.{k}": v.numpy() for r, rec in msg.content.array_records.items() for k, v in rec.items()}
    if RECORD_KEY_CONFIGS in msg.content and Key.MASKED_PARAMETERS in msg.content[RECORD_KEY_CONFIGS]:
        for i, blob in enumerate(msg.content[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]):
            arrays[f"{RECORD_KEY_CONFIGS}.{Key.MASKED_PARAMETERS}.{i}"] = bytes_to_ndarray(blob)
    return arrays


@dataclass
class AuditLog:
    """Message records (node ids; mapped to partition ids when the results are built)."""

    keep_arrays: bool = False
    records: list[dict[str, Any]] = field(default_factory=list)
    arrays: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = field(default_factory=list)

    def record(self, msg: Message, direction: str, node: int, request: dict[str, Any]) -> None:
        entry = {**request, "direction": direction, "node": node,
                 "message_type": msg.metadata.message_type, "error": msg.has_error(), **message_bytes(msg)}
        self.records.append(entry)
        if self.keep_arrays and direction == "client->server" and msg.has_content():
            self.arrays.append((entry, _received_arrays(msg)))

    def with_clients(self, pid_of: dict[int, int]) -> list[dict[str, Any]]:
        """The records with each node's partition id as ``client`` (None if never known)."""
        return [{**r, "client": pid_of.get(r["node"])} for r in self.records]

    def traffic(self, pid_of: dict[int, int]) -> dict[str, Any]:
        """Bytes each client sent and received, in total and per (phase, configuration, round)."""
        clients: dict[str, dict[str, Any]] = {}
        for r in self.with_clients(pid_of):
            key = str(r["client"]) if r["client"] is not None else f"node-{r['node']}"
            c = clients.setdefault(key, {"sent_bytes": 0, "received_bytes": 0, "messages": {}})
            side = "sent_bytes" if r["direction"] == "client->server" else "received_bytes"
            c[side] += r["bytes"]
            m = c["messages"].setdefault(f"{r['phase']}/{r['index']}/{r['round']}", {
                "phase": r["phase"], "index": r["index"], "round": r["round"], "sent_bytes": 0, "received_bytes": 0})
            m[side] += r["bytes"]
        for c in clients.values():
            c["messages"] = list(c["messages"].values())
        return {"clients": clients,
                "total_sent_bytes": sum(c["sent_bytes"] for c in clients.values()),
                "total_received_bytes": sum(c["received_bytes"] for c in clients.values())}

    def jsonl(self, pid_of: dict[int, int]) -> str:
        return "".join(json.dumps(r) + "\n" for r in self.with_clients(pid_of))


class AuditedGrid:
    """A ``Grid`` that records what it sends and receives; everything else is delegated."""

    def __init__(self, grid: Grid, log: AuditLog) -> None:
        self._grid = grid
        self.audit = log
        self._scope: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    @contextmanager
    def scope(self, **fields: Any) -> Iterator[None]:
        """Record messages that carry no fedsim ``config`` (SecAgg+'s) under these fields
        (configuration ``index``, ``round``)."""
        self._scope = fields
        try:
            yield
        finally:
            self._scope = {}

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        sent = {}
        for m in messages:
            sent[m.metadata.dst_node_id] = request = _request_fields(m, self._scope)
            self.audit.record(m, "server->client", m.metadata.dst_node_id, request)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout)) if messages else []
        for r in replies:
            node = r.metadata.src_node_id
            self.audit.record(r, "client->server", node, sent.get(node, {"phase": "?", "index": 0, "round": 0}))
        return replies
