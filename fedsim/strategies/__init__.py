"""The server side of the federation: one Flower ``Strategy`` per server flow, by name.

Adding a flow is one module with a :class:`~fedsim.strategies.base.FedsimStrategy`
subclass, registered here, plus its tests.
"""

from fedsim.registry import Registry
from fedsim.strategies.base import FedsimStrategy
from fedsim.strategies.online import OnlineStrategy
from fedsim.strategies.release import ReleaseStrategy

STRATEGIES: Registry[FedsimStrategy] = Registry("strategy")
STRATEGIES.register("release")(ReleaseStrategy)
STRATEGIES.register("online")(OnlineStrategy)


def strategy_name(scenario) -> str:
    """The scenario's flow (``auto``: ``online`` with online rounds, else ``release``);
    an unknown name is a ValueError listing the registered ones."""
    name = scenario.federation.strategy
    if name == "auto":
        name = "online" if scenario.online.rounds else "release"
    STRATEGIES.get(name)
    return name


__all__ = ["STRATEGIES", "FedsimStrategy", "OnlineStrategy", "ReleaseStrategy", "strategy_name"]
