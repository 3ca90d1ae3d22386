"""The server side of the federation: how it collects releases and what it learns from them."""

from fedsim.strategies.pooled import ClientRelease, combine_scores, fit_pooled, score_locally
from fedsim.strategies.server_app import make_server_app

__all__ = ["ClientRelease", "combine_scores", "fit_pooled", "score_locally", "make_server_app"]
