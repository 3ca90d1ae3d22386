"""The server's view of the federation across all strategies of a run: which nodes are
still in, which partition each node serves, and every failure.

Which clients are asked in a round is :mod:`fedsim.strategies.participation`'s plan
(everyone still in, unless ``[federation.participation]`` samples). A client that raises, stays silent past the round timeout or sends a reply the protocol
rejects is recorded ONCE in ``failures`` (``{round, phase, client, reason}``), left out of
that round's aggregation and of every later message; the run goes on while at least
``federation.min_clients`` clients remain (default: more than half), and otherwise stops
with one :class:`FederationError`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flwr.app import Message

from fedsim.protocol import ProtocolError, Request, decode_reply, reply_error
from fedsim.strategies.participation import Participation, RoundPlan

log = logging.getLogger(__name__)
R = TypeVar("R")


class FederationError(RuntimeError):
    """Too few clients left to go on; the message names them and why the others failed."""


def wait_for_nodes(grid: Any, wanted: int, timeout: float) -> list[int]:
    """Node ids once ``wanted`` nodes are connected; a finite wait (deployment nodes join late)."""
    deadline = time.monotonic() + timeout
    while len(ids := sorted(grid.get_node_ids())) < wanted:
        if time.monotonic() > deadline:
            raise FederationError(
                f"only {len(ids)} of {wanted} clients (federation.num_clients) connected within "
                f"{timeout:.0f}s; under flwr run pass --federation-config 'num-supernodes={wanted}'")
        time.sleep(0.2)
    return ids


def majority(values: Iterable[tuple[int, int]]) -> int | None:
    """The most common value of (partition id, value) pairs; ties go to the lowest partition id
    (how the server fixes one embedding dimension / class count without trusting one client)."""
    pairs = sorted(values)
    if not pairs:
        return None
    counts = Counter(v for _, v in pairs)
    top = max(counts.values())
    return next(v for _, v in pairs if counts[v] == top)


def _claimed_partition(msg: Message) -> int | None:
    try:
        return int(msg.content["error"]["partition-id"]) if not msg.has_error() and "error" in msg.content else None
    except (KeyError, TypeError, ValueError):
        return None


class Federation:
    def __init__(self, node_ids: list[int], quorum: int, timeout: float,
                 participation: Participation | None = None) -> None:
        self.active = list(node_ids)
        self.num_clients = len(node_ids)
        self.quorum = quorum
        self.timeout = timeout
        self.participation = participation
        self.pid_of: dict[int, int] = {}
        self.failures: list[dict[str, Any]] = []
        self.num_classes: int | None = None
        self.asked: list[int] = []

    def introduce(self, grid: Any) -> None:
        """Learn every node's partition id (the ``hello`` phase): sampled participation draws
        by partition id, and a client that drops out of SecAgg+ sends nothing that names
        its partition, so both need them before the first round."""
        replies = grid.send_and_receive(self.messages(Request("hello", 0, "none", {})), timeout=self.timeout)
        self.accept(replies, "hello", 0, 0)

    def plan(self, round_index: int) -> RoundPlan | None:
        """Who takes part in round ``round_index``; None: every client still in."""
        if self.participation is None:
            return None
        return self.participation.plan(round_index, [self.pid_of[n] for n in self.active])

    def select(self, pids: Iterable[int] | None = None) -> list[int]:
        """The nodes still in (of partitions ``pids`` only, when given); they become ``asked``."""
        wanted = None if pids is None else set(pids)
        self.asked = [n for n in self.active if wanted is None or self.pid_of.get(n) in wanted]
        return self.asked

    def messages(self, request: Request, pids: Iterable[int] | None = None) -> list[Message]:
        """One message per client still in (of ``pids`` only, when given)."""
        return [request.to_message(node) for node in self.select(pids)]

    def fail(self, node: int, phase: str, index: int, round_index: int, reason: str,
             claimed: int | None = None) -> None:
        """Record the failure and leave the node out; ``claimed`` is the partition id an error
        reply names, used only when the node never sent a valid reply."""
        if node not in self.active:
            return
        self.active.remove(node)
        who = self.pid_of.get(node, claimed if claimed is not None else f"node-{node}")
        entry = {"round": round_index, "index": index, "phase": phase, "client": who, "node_id": node,
                 "reason": reason}
        self.failures.append(entry)
        log.error("client %s failed in %s (configuration %d, round %d): %s", entry["client"], phase, index,
                  round_index, reason.strip().splitlines()[0] if reason.strip() else "")

    def accept(self, replies: Iterable[Message], phase: str, index: int, round_index: int,
               check: Callable[[Any], None] | None = None, late: Iterable[int] = ()) -> dict[int, Any]:
        """Decoded, validated replies by node; every other node asked is recorded as failed.

        ``check(reply)`` runs the phase's protocol checks (it may depend on the other replies,
        which are decoded first); a reply is used whole or not at all. Replies of the
        partitions in ``late`` (simulated stragglers) are checked like the others but left
        out of the result; those clients stay in."""
        asked = [n for n in self.asked if n in self.active]
        late = set(late)
        decoded: dict[int, Any] = {}
        for msg in replies:
            node = msg.metadata.src_node_id
            if node not in asked:
                continue
            reason = reply_error(msg)
            if reason is None:
                try:
                    reply = decode_reply(msg, phase)
                    self.check_partition(node, reply.partition_id)
                    if any(r.partition_id == reply.partition_id for r in decoded.values()):
                        raise ProtocolError(f"partition id {reply.partition_id} sent by two nodes")
                    decoded[node] = reply
                    continue
                except ProtocolError as err:
                    reason = f"invalid reply: {err}"
            self.fail(node, phase, index, round_index, reason, claimed=_claimed_partition(msg))
        for node in asked:
            if node not in decoded and node in self.active:
                self.fail(node, phase, index, round_index, f"no reply within the round timeout ({self.timeout:.0f}s)")
        accepted = {}
        for node, reply in sorted(decoded.items(), key=lambda kv: kv[1].partition_id):
            try:
                if check is not None:
                    check(reply)
            except ProtocolError as err:
                self.fail(node, phase, index, round_index, f"invalid reply: {err}")
                continue
            self.pid_of.setdefault(node, reply.partition_id)
            if reply.partition_id not in late:
                accepted[node] = reply
        self.require_quorum(f"{phase} of configuration {index}, round {round_index}")
        return accepted

    def check_partition(self, node: int, pid: int) -> None:
        """A ProtocolError unless ``pid`` is a partition this node may serve (its own, or a free one)."""
        if not 0 <= pid < self.num_clients:
            raise ProtocolError(f"partition id {pid} outside [0, {self.num_clients - 1}]")
        known = self.pid_of.get(node)
        if known is not None and known != pid:
            raise ProtocolError(f"partition id {pid}, but this node serves partition {known}")
        if known is None and pid in self.pid_of.values():
            raise ProtocolError(f"partition id {pid} is already served by another node")

    def require_quorum(self, where: str) -> None:
        if len(self.active) < self.quorum:
            reasons = "; ".join(f"client {f['client']}: {f['reason'].strip().splitlines()[0]}"
                                for f in self.failures[:3] if f["reason"].strip())
            raise FederationError(
                f"{where}: only {len(self.active)} of {self.num_clients} clients left, below "
                f"federation.min_clients = {self.quorum}; {len(self.failures)} failed ({reasons})")
