"""The privacy accountant's figures for a run: epsilon of every ``dp_gaussian`` release and
of every aggregate flow's noised statistics (``[aggregates.<name>] epsilon``), per client,
alone and composed over the run (fedsim.privacy.accountant).

The mechanism and its scale are public (the scenario), so the server computes these from
the configurations and from who took part -- the same figures a client would.

* One-shot releases: a client's training records (and, with server-side evaluation, its
  queries) are released once per configuration; ``epsilon_run`` composes every DP
  configuration of the run so far.  Non-DP configurations of the same run (the ``none``
  reference, other methods) are comparisons, left out: a client that really made them
  would have no guarantee at all.
* Online rounds: each round releases a new, disjoint batch of training records (each once),
  but with server-side evaluation the client's queries go out again every round it takes
  part in, so its epsilon grows with those rounds (``epsilon_per_round``).
* ``fedavg_head`` with DP on its updates: every round a client is asked, its noised update
  (a function of ALL its records: client-level DP, which implies the same epsilon per
  record) is one Gaussian release, so its epsilon composes over the rounds it was asked
  (``epsilon_per_round``; asked, not aggregated: a late or rejected update was still seen).
  The server draws the participants itself, so sampling amplifies nothing here.
"""

from __future__ import annotations

from typing import Any

from fedsim import anonymizers
from fedsim.classifiers.federated import AGGREGATES
from fedsim.privacy.accountant import composed_epsilon


def noise_multiplier(method: str, params: dict[str, Any]) -> float | None:
    """The configuration's Gaussian noise multiplier per record (None: no formal guarantee):
    a ``dp_gaussian`` release, or an aggregate flow's statistics with ``epsilon`` set."""
    if method in AGGREGATES:
        return AGGREGATES.create(method, **params).noise_multiplier()
    if method not in anonymizers.REGISTRY:
        return None
    return anonymizers.create(method, **params).noise_multiplier()


def _online_epsilons(z: float, rounds_in: list[int], n_rounds: int, queries_sent: bool, delta: float) -> list[float]:
    """A client's epsilon after each online round (0 before it first takes part)."""
    out, taken = [], 0
    for r in range(n_rounds):
        taken += r in rounds_in
        if not taken:
            out.append(0.0)
        else:
            out.append(max(composed_epsilon([z], delta), composed_epsilon([z] * taken, delta) if queries_sent else 0.0))
    return out


def _update_entry(dp: dict[str, Any], history: dict[int, list[float]], delta: float) -> dict[str, Any]:
    """The dp entry of a flow that releases one noised update per round a client is asked:
    ``dp["asked"]`` lists the partition ids asked, per round."""
    z, asked = dp["noise_multiplier"], dp["asked"]
    clients = {}
    for pid in sorted({p for rnd in asked for p in rnd}):
        per_round, k = [], 0
        for rnd in asked:
            k += pid in rnd
            per_round.append(composed_epsilon([z] * k, delta))
        history.setdefault(pid, []).extend([z] * k)
        clients[pid] = {"epsilon": per_round[-1], "epsilon_run": composed_epsilon(history[pid], delta),
                        "epsilon_per_round": per_round, "releases": k}
    return {"delta": delta, "noise_multiplier": z, "unit": "client",
            "epsilon": max((c["epsilon"] for c in clients.values()), default=0.0),
            "epsilon_run": max((c["epsilon_run"] for c in clients.values()), default=0.0),
            "clients": {str(p): c for p, c in clients.items()}}


def dp_entries(rounds: list[dict[str, Any]], delta: float) -> dict[int, dict[str, Any]]:
    """``{configuration index: dp entry}`` for every configuration with a formal guarantee."""
    history: dict[int, list[float]] = {}  # client -> noise multipliers of its DP releases so far
    out = {}
    for r in rounds:
        if "update_dp" in r:  # fedavg_head: a noised update per round the client was asked
            out[r["index"]] = _update_entry(r["update_dp"], history, delta)
            continue
        z = noise_multiplier(r["method"], r["params"])
        if z is None:
            continue
        queries_sent = r["evaluation"]["mode"] == "server"
        clients = {}
        for pid in sorted(r["outcomes"]):
            online = r.get("online")
            if online is None:
                history.setdefault(pid, []).append(z)
                alone = composed_epsilon([z], delta)
                clients[pid] = {"epsilon": alone, "epsilon_run": composed_epsilon(history[pid], delta)}
                continue
            rounds_in = ([rec["round"] for rec in r["participation"] if pid in rec["took_part"]]
                         if r.get("participation") else list(range(online["rounds"])))
            per_round = _online_epsilons(z, rounds_in, online["rounds"], queries_sent, delta)
            # the run: earlier configurations' releases of these records compose with this one's
            history.setdefault(pid, []).extend([z] * (len(rounds_in) if queries_sent else 1))
            clients[pid] = {"epsilon": per_round[-1], "epsilon_run": composed_epsilon(history[pid], delta),
                            "epsilon_per_round": per_round}
        out[r["index"]] = {
            "delta": delta, "noise_multiplier": z,
            "epsilon": max((c["epsilon"] for c in clients.values()), default=0.0),
            "epsilon_run": max((c["epsilon_run"] for c in clients.values()), default=0.0),
            "clients": {str(p): c for p, c in clients.items()},
        }
    return out
