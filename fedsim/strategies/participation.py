"""Who takes part in a round: client sampling, dropout and stragglers, simulated and seeded.

Per round ``r`` the server samples ``max(min_sampled, ceil(fraction * n))`` of the ``n``
clients still in (Flower's ``fraction_train`` / ``min_train_nodes``); each sampled client
is then unavailable with probability ``dropout`` (no message reaches it), and the others
reply after a simulated delay. A client's mean delay is its own (a log-normal draw around
``delay_s``: slow and fast devices), each round's delay an exponential draw around it;
a reply delayed past the deadline is **late** -- received (the server saw it), recorded,
left out of that round's aggregation and scores -- and the client stays in for later
rounds. Real failures (an error, silence past ``federation.round_timeout``, a rejected
reply) remain failures (:mod:`fedsim.strategies.federation`).

Every draw depends on (scenario seed, round, partition id) only -- never on node ids,
which Flower draws at random, nor on the configuration -- so the same scenario and seed
give the same participants, and every anonymizer configuration of a run is compared on
the same clients in the same rounds. Delays are simulated (nobody sleeps), so a run's
results do not depend on how fast the machine is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fedsim.config import ParticipationConfig
from fedsim.seeding import rng


@dataclass
class RoundPlan:
    """One round's participation, by partition id."""

    round: int
    sampled: list[int]
    dropped: list[int] = field(default_factory=list)
    delays: dict[int, float] = field(default_factory=dict)  # simulated reply delay of each client asked
    deadline: float = math.inf

    @property
    def asked(self) -> list[int]:
        """The sampled clients that are available: they get the round's messages."""
        return [p for p in self.sampled if p not in self.dropped]

    @property
    def late(self) -> list[int]:
        return [p for p in self.asked if self.delays.get(p, 0.0) > self.deadline]

    def record(self, took_part: list[int], failed: list[int]) -> dict[str, Any]:
        """The round as results.json states it."""
        return {"round": self.round, "sampled": self.sampled, "dropped": self.dropped,
                "late": [{"client": p, "delay_s": round(self.delays[p], 3)} for p in self.late],
                "failed": failed, "took_part": took_part}


class Participation:
    """The seeded participation schedule of one run."""

    def __init__(self, config: ParticipationConfig, seed: int, deadline: float) -> None:
        self.config, self.seed = config, seed
        self.deadline = config.deadline_s or deadline

    def sample_size(self, n: int) -> int:
        return min(n, max(self.config.min_sampled, math.ceil(self.config.fraction * n)))

    def mean_delay(self, pid: int) -> float:
        """The client's own mean delay: log-normal around ``delay_s`` with the same mean."""
        c = self.config
        return c.delay_s * math.exp(c.delay_spread * rng(self.seed, "device-speed", pid).standard_normal()
                                    - c.delay_spread ** 2 / 2)

    def plan(self, round_index: int, candidates: list[int]) -> RoundPlan:
        """Round ``round_index`` over the partition ids still in."""
        c, pool = self.config, sorted(candidates)
        if not c.enabled():
            return RoundPlan(round_index, pool)
        k = self.sample_size(len(pool))
        sampled = sorted(int(p) for p in rng(self.seed, "sample", round_index).choice(pool, k, replace=False))
        dropped = [p for p in sampled if c.dropout and rng(self.seed, "dropout", round_index, p).random() < c.dropout]
        delays = {p: float(rng(self.seed, "delay", round_index, p).exponential(self.mean_delay(p))) if c.delay_s else 0.0
                  for p in sampled if p not in dropped}
        return RoundPlan(round_index, sampled, dropped, delays, self.deadline)
