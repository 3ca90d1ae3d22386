"""At most ``window`` messages in flight: the rest wait on the server until replies come.

Flower's in-memory LinkState (the simulation engine) finds a node's next message by
scanning every stored message, for each of the N nodes, ten times a second: with all N
messages of a round pushed at once that is O(N^2) work per sweep on the driver, which on
a small machine takes the CPU the clients need (1,000 clients: most of a round's time).
Keeping a window of messages in flight -- a few per client slot Ray can run at once --
gives the same parallelism without that cost.  Deployment pushes everything at once: its
clients are machines of their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from flwr.app import Message

#: seconds between polls for replies when none arrived (Flower's own grid polls every 0.1 s)
POLL_S = 0.02


class WindowedGrid:
    """A ``Grid`` whose ``send_and_receive`` keeps at most ``window`` messages in flight;
    everything else is delegated. The timeout is the whole round's, as for Flower's grid:
    a message not yet sent when it expires gets no reply (the server records the client
    as silent)."""

    def __init__(self, grid: Any, window: int) -> None:
        self.grid, self.window = grid, window

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        waiting = list(messages)
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        in_flight: set[str] = set()
        replies: list[Message] = []
        while (waiting or in_flight) and time.monotonic() < deadline:
            if waiting and len(in_flight) < self.window:
                batch, waiting = waiting[: self.window - len(in_flight)], waiting[self.window - len(in_flight):]
                in_flight.update(self.grid.push_messages(batch))
            got = list(self.grid.pull_messages(in_flight)) if in_flight else []
            replies += got
            in_flight.difference_update(m.metadata.reply_to_message_id for m in got)
            if not got:
                time.sleep(POLL_S)
        return replies
