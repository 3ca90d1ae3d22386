"""What crossed the wire: every message the server sent and every reply it received.

:class:`AuditedGrid` wraps Flower's ``Grid`` (so Flower's own ``Strategy.start`` loop is
audited too) and records, per message: configuration index, round, phase, direction,
node, array names, shapes, dtypes and bytes -- and, on request, the arrays the server
received.  The records become ``results["traffic"]`` (bytes per client, message type and
round) and, with ``[audit] messages = true`` (``fedsim run --audit``), ``audit.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.serverapp import Grid

from fedsim.protocol import message_bytes


def _request_fields(msg: Message) -> dict[str, Any]:
    cfg = msg.content["config"] if msg.has_content() and "config" in msg.content else {}
    return {"phase": str(cfg.get("phase", msg.metadata.message_type)), "index": int(cfg.get("index", 0)),
            "round": int(cfg.get("round", 0))}


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
            self.arrays.append((entry, {f"{r}.{k}": v.numpy() for r, rec in msg.content.array_records.items()
                                        for k, v in rec.items()}))

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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        sent = {}
        for m in messages:
            sent[m.metadata.dst_node_id] = request = _request_fields(m)
            self.audit.record(m, "server->client", m.metadata.dst_node_id, request)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout)) if messages else []
        for r in replies:
            node = r.metadata.src_node_id
            self.audit.record(r, "client->server", node, sent.get(node, {"phase": "?", "index": 0, "round": 0}))
        return replies
