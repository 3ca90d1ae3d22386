"""SecAgg+ for the aggregate flows: the server learns the SUM of the clients' statistics,
never one client's (``[federation.secure_aggregation]``).

Flower ships SecAgg+ only as a legacy workflow: ``SecAggPlusWorkflow`` inside a
``DefaultWorkflow`` driving a legacy ``flwr.server.strategy`` strategy.  :func:`secure_sum`
runs it once, on the run's audited grid, for the nodes the Federation asks; the clients'
``secaggplus_mod`` answers its four stages, all of message type ``train``:

* ``setup``: the protocol's parameters -> each client's two public keys;
* ``share_keys``: the neighbours' public keys -> Shamir shares of the client's mask seed and
  key, encrypted for each neighbour (the server forwards ciphertexts it cannot read);
* ``collect_masked_vectors``: the forwarded shares and the fit config (fedsim's request) ->
  the mod calls the ClientApp's default ``train`` handler for the scaled statistics
  (fedsim.protocol.SecureEncoding), quantises them, adds the masks, and sends only that;
* ``unmask``: who survived -> shares of the survivors' mask seeds and of the dropped
  clients' keys, from which the server removes every mask and gets the mean of the
  survivors' vectors (weight 1 each) -- their sum divided by their number.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.common import FitIns, FitRes, Parameters, Scalar, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from fedsim.config import SecureAggregationConfig
from fedsim.protocol import reply_error
from fedsim.strategies.federation import FederationError

log = logging.getLogger(__name__)


@dataclass
class SecureRound:
    """What one SecAgg+ run gave the server."""

    mean: list[np.ndarray] | None  # the survivors' mean vector (None: the protocol halted)
    metrics: dict[int, dict[str, Scalar]]  # each survivor's clear-text fit metrics, by node
    failed: dict[int, str] = field(default_factory=dict)  # node -> the stage and reason it dropped
    num_shares: int = 0
    reconstruction_threshold: int = 0


class _Capture(FedAvg):
    """The legacy strategy SecAgg+ needs: asks exactly ``nodes`` with ``config`` and keeps
    the unmasked aggregate instead of treating it as model weights."""

    def __init__(self, nodes: list[int], config: dict[str, Scalar]) -> None:
        super().__init__(fraction_evaluate=0.0, initial_parameters=Parameters(tensors=[], tensor_type=""))
        self.nodes, self.config = set(nodes), config
        self.mean: list[np.ndarray] | None = None
        self.metrics: dict[int, dict[str, Scalar]] = {}

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: ClientManager
                      ) -> list[tuple[ClientProxy, FitIns]]:
        fit_ins = FitIns(parameters, self.config)
        return [(proxy, fit_ins) for proxy in client_manager.all().values() if proxy.node_id in self.nodes]

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[Any]) -> tuple[Parameters | None, dict[str, Scalar]]:
        if results:  # SecAgg+ put the one aggregate into every result
            self.mean = parameters_to_ndarrays(results[0][1].parameters)
        self.metrics = {proxy.node_id: dict(res.metrics) for proxy, res in results}
        return None, {}


class _Tap:
    """The grid SecAgg+ runs on: delegates, and keeps which node dropped in which stage and
    why (the workflow keeps its failures without node ids)."""

    def __init__(self, grid: Any, timeout: float) -> None:
        self._grid, self.timeout = grid, timeout
        self.failed: dict[int, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        stage = messages[0].content[RECORD_KEY_CONFIGS][Key.STAGE] if messages else ""
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        by_node = {r.metadata.src_node_id: r for r in replies}
        for m in messages:
            reply = by_node.get(m.metadata.dst_node_id)
            reason = (f"no reply within the round timeout ({self.timeout:.0f}s)" if reply is None
                      else reply_error(reply) if reply.has_error() else None)
            if reason is not None:
                self.failed.setdefault(m.metadata.dst_node_id, f"SecAgg+ {stage}: {reason}")
        return replies


def protocol_sizes(config: SecureAggregationConfig, asked: int) -> tuple[int, int]:
    """(num_shares, reconstruction_threshold) for ``asked`` clients; 0s take the defaults
    (every client asked; more than half of the shares)."""
    shares = min(config.num_shares or asked, asked)
    threshold = config.reconstruction_threshold or shares // 2 + 1
    if shares < 3 or threshold >= shares:
        raise FederationError(f"SecAgg+ needs at least 3 clients sharing secrets and a reconstruction threshold "
                              f"below their number; {asked} client(s) asked, num_shares = {shares}, "
                              f"reconstruction_threshold = {threshold} (federation.secure_aggregation)")
    return shares, threshold


def secure_sum(grid: Any, nodes: list[int], fit_config: dict[str, Scalar], config: SecureAggregationConfig,
               timeout: float) -> SecureRound:
    """One SecAgg+ run over ``nodes``; ``fit_config`` reaches each client's train handler."""
    shares, threshold = protocol_sizes(config, len(nodes))
    strategy = _Capture(nodes, fit_config)
    context = LegacyContext(Context(run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(),
                                    run_config={}), config=ServerConfig(num_rounds=1), strategy=strategy)
    tap = _Tap(grid, timeout)
    workflow = SecAggPlusWorkflow(shares, threshold, max_weight=1.0, clipping_range=config.clipping_range,
                                  quantization_range=config.quantization_range, timeout=timeout)
    DefaultWorkflow(fit_workflow=workflow)(tap, context)
    log.info("SecAgg+: %d of %d clients in the sum (num_shares %d, reconstruction_threshold %d)",
             len(strategy.metrics), len(nodes), shares, threshold)
    return SecureRound(strategy.mean, strategy.metrics, tap.failed, shares, threshold)
