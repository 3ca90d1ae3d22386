"""The server side of the federation: one Flower ``Strategy`` per server flow, by name.

Adding a flow is one module with a :class:`~fedsim.strategies.base.FedsimStrategy`
subclass, registered here, plus its tests.
"""

from fedsim.registry import Registry
from fedsim.strategies.aggregates import FedNCMStrategy, FedRidgeStrategy
from fedsim.strategies.base import FedsimStrategy
from fedsim.strategies.fedavg import FedAvgHeadStrategy
from fedsim.strategies.online import OnlineStrategy
from fedsim.strategies.release import ReleaseStrategy

STRATEGIES: Registry[FedsimStrategy] = Registry("strategy")
STRATEGIES.register("release")(ReleaseStrategy)
STRATEGIES.register("online")(OnlineStrategy)
STRATEGIES.register("fed_ncm")(FedNCMStrategy)
STRATEGIES.register("fed_ridge")(FedRidgeStrategy)
STRATEGIES.register("fedavg_head")(FedAvgHeadStrategy)


def strategy_names(scenario) -> list[str]:
    """The scenario's flows, in the order they run (``auto``: ``online`` with online rounds,
    else ``release``); an unknown name is a ValueError listing the registered ones, and
    ``online`` runs alone (its rounds and results are its own)."""
    value = scenario.federation.strategy
    names = [value] if isinstance(value, str) else list(value)
    names = [("online" if scenario.online.rounds else "release") if n == "auto" else n for n in names]
    for name in names:
        STRATEGIES.get(name).check(scenario)
    if "online" in names and len(names) > 1:
        raise ValueError(f"online runs alone, not with {', '.join(n for n in names if n != 'online')}")
    return names


__all__ = ["STRATEGIES", "FedAvgHeadStrategy", "FedNCMStrategy", "FedRidgeStrategy", "FedsimStrategy",
           "OnlineStrategy", "ReleaseStrategy", "strategy_names"]
