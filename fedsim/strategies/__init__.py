"""The server side of the federation: how it collects releases and what it learns from them."""

from fedsim.strategies.pooled import ClientRelease, evaluate_pooled
from fedsim.strategies.server_app import make_server_app

__all__ = ["ClientRelease", "evaluate_pooled", "make_server_app"]
