"""``fedavg_head``: an FC head trained with Flower's FedAvg (or FedProx) over ``rounds`` rounds.

Round ``r``: the round's participants (fedsim's participation plan) get the global model in
Flower's train-message layout -- built by Flower's own ``FedAvg.configure_train`` /
``FedProx.configure_train`` (the ``arrays`` and ``config`` records, ``server-round`` and
FedProx's ``proximal-mu``), sent as ``train.fedavg`` -- train it locally on their embeddings
(fedsim.clients.fedavg) and reply with the result (fedsim.protocol.UpdateReply).  Every
reply is decoded and validated first (shapes, finite values, the weight's bounds); the
accepted replies then go to Flower's ``FedAvg.aggregate_train``, the weighted mean of their
ArrayRecords by ``num-examples``.  After the last round (and every ``evaluate_every``
rounds) the global model goes to every client that took part, which scores its own queries
(``evaluate.release``): the server never receives a query.

With differential privacy (``epsilon`` or ``noise_multiplier``) each client clips and noises
its update before it leaves (local DP at the client level: the whole client's update is the
unit), every weight is 1, and the result carries who was asked in every round, from which
fedsim.strategies.dp accounts the epsilon per client and round.  Flower's central-DP
wrappers (``DifferentialPrivacy{Client,Server}SideFixedClipping``) add the noise on the
server, which would then see every client's update in clear: not used, since the server is
the adversary here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedProx

from fedsim.classifiers import FCClassifier
from fedsim.config import Scenario, fedavg_head_configs
from fedsim.labels import config_label
from fedsim.protocol import MESSAGE_TYPES, UpdateReply
from fedsim.strategies.base import Scores
from fedsim.strategies.release import OneShotStrategy

log = logging.getLogger(__name__)


class _Planned:
    """The grid as Flower's ``configure_train`` sees it: only the nodes fedsim's participation
    plan asks this round (with ``fraction_train = 1`` Flower then asks exactly them)."""

    def __init__(self, nodes: list[int]) -> None:
        self._nodes = list(nodes)

    def get_node_ids(self) -> list[int]:
        return list(self._nodes)


def pooled_accuracy(scores: Scores, name: str) -> float:
    total = sum(scores.n_query[p] for p in scores.correct)
    return sum(scores.correct[p][name][0] for p in scores.correct) / total if total else math.nan


class FedAvgHeadStrategy(OneShotStrategy):
    """One ``[aggregates.fedavg_head]`` configuration, ``rounds`` Flower rounds."""

    name = "fedavg_head"
    classifier = "fc"
    evaluation = "client"
    release_phase = "fedavg"

    @classmethod
    def plan(cls, scenario: Scenario) -> list[tuple[str, dict[str, Any], str, dict[str, Any]]]:
        return [(cls.name, p, config_label(cls.name, p), {})
                for p, _ in fedavg_head_configs(scenario.aggregates.get(cls.name, {}))]

    @classmethod
    def check(cls, scenario: Scenario) -> None:
        if scenario.federation.secure_aggregation.enabled:
            raise ValueError("fedavg_head sends each client's update to the server, not through SecAgg+ "
                             "(federation.secure_aggregation covers fed_ncm / fed_ridge); run it without secure "
                             "aggregation -- its differential privacy noises each update on the client "
                             "(aggregates.fedavg_head.epsilon)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cfg = fedavg_head_configs(self.params)[0][1]
        self.num_rounds = self.cfg.rounds
        self.noise_multiplier = self.cfg.resolved_noise_multiplier()
        # fedsim's participation plan picks the nodes: Flower's sampling asks all it is shown
        every = {"fraction_train": 1.0, "min_train_nodes": 0, "min_available_nodes": 0}
        mu = self.cfg.proximal_mu
        self.flower = FedProx(proximal_mu=mu, **every) if mu > 0 else FedAvg(**every)
        self.global_: dict[str, np.ndarray] | None = None
        self.asked: list[int] = []  # this round's nodes
        self.asked_rounds: list[list[int]] = []  # partition ids asked, per round (the DP accounting)
        self.trained: set[int] = set()  # partitions whose update entered a global model
        self.history: list[dict[str, Any]] = []
        self.evaluating = False

    def anonymizer(self) -> None:
        return None  # no records leave the clients

    def classifier_names(self) -> list[str]:
        return [self.classifier]

    def summary(self) -> None:
        super().summary()
        log.info("%s: Flower %s, %d local epoch(s), lr %g, batch %d%s", self.label, type(self.flower).__name__,
                 self.cfg.local_epochs, self.cfg.lr, self.cfg.batch_size,
                 f"; DP on updates: clip {self.cfg.clip_norm:g}, noise multiplier {self.noise_multiplier:.4g}"
                 if self.cfg.dp else "")

    # -- rounds ------------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        pids = self.begin_round(server_round)
        self.asked = self.fed.select(pids)
        self._t_sent = time.perf_counter()
        if not self.asked:
            return []
        request = ConfigRecord(self.request(self.release_phase, server_round).config())
        messages = self.flower.configure_train(server_round, arrays, request, _Planned(self.asked))
        # Flower's content (``arrays``: the global model, empty in round 1; ``config``), fedsim's message type
        return [Message(m.content, message_type=MESSAGE_TYPES[self.release_phase], dst_node_id=m.metadata.dst_node_id,
                        group_id=f"{self.release_phase}-{self.index}-{server_round - 1}") for m in messages]

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        d, C, H = self.limits.dim or 0, self.fed.num_classes or 0, self.cfg.hidden
        shapes = {"out.weight": (C, H or d), "out.bias": (C,)}
        if H:
            shapes.update({"hidden.weight": (H, d), "hidden.bias": (H,)})
        return shapes

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)

        def check(reply: UpdateReply) -> None:
            reply.validate(self.limits, self.expected_shapes(), uniform_weight=self.cfg.dp)

        ok = self.accept_round(replies, server_round, self.release_phase, UpdateReply.dim, check)
        self.asked_rounds.append(sorted(self.fed.pid_of[n] for n in self.asked if n in self.fed.pid_of))
        for reply in ok:
            timings = self.outcomes[reply.partition_id].timings
            for k, v in reply.timings.items():  # seconds summed over the rounds
                timings[k] = timings.get(k, 0.0) + v if k == "train_s" else v
        used = {r.partition_id for r in ok}
        accepted = [m for m in replies if self.fed.pid_of.get(m.metadata.src_node_id) in used]
        t0 = time.perf_counter()
        arrays, metrics = self.flower.aggregate_train(server_round, accepted) if accepted else (None, None)
        if arrays is not None:
            self.trained |= used
            self.global_ = {k: v.numpy() for k, v in arrays.items()}
            C = self.fed.num_classes
            state = {"classes": np.arange(C, dtype=np.int64), "class_count": np.zeros(C, np.int64), **self.global_}
            self.fitted = {self.classifier: FCClassifier(hidden=self.cfg.hidden, normalize=self.cfg.normalize
                                                         ).set_state(state)}
        self.fit_s[self.classifier] = self.fit_s.get(self.classifier, 0.0) + time.perf_counter() - t0
        entry: dict[str, Any] = {"round": server_round, "n_clients": len(ok)}
        if metrics is not None and "train-loss" in metrics:
            entry["train_loss"] = float(metrics["train-loss"])  # Flower's weighted mean over the clients
        self.history.append(entry)
        return arrays, self.metrics({k: v for k, v in entry.items() if k != "round"})

    # -- evaluation --------------------------------------------------------------------------
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        every = self.cfg.evaluate_every
        self.evaluating = self.global_ is not None and (
            server_round == self.num_rounds or bool(every and server_round % every == 0))
        if not self.evaluating:
            return []
        states = {f"classifier.{self.classifier}": self.fitted[self.classifier].get_state()}
        # every client whose update entered the model scores it (it kept its queries then)
        return self.send(self.request(self.evaluate_phase, server_round, arrays=states), sorted(self.trained))

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        if not self.evaluating:
            return None
        t0 = time.perf_counter()
        scores = self.accept_scores(replies, server_round, [self.classifier])
        self.history[-1]["accuracy"] = accuracy = pooled_accuracy(scores, self.classifier)
        if server_round == self.num_rounds:
            self.scores, self.t_evaluate = scores, time.perf_counter() - t0
        return self.metrics({f"accuracy.{self.classifier}": accuracy})

    def result(self) -> dict[str, Any]:
        out = super().result()
        cfg = self.cfg
        info: dict[str, Any] = {
            "strategy": type(self.flower).__name__, "rounds": cfg.rounds, "local_epochs": cfg.local_epochs,
            "n_features": self.limits.dim,
            "n_parameters": int(sum(v.size for v in self.global_.values())) if self.global_ else 0,
            "per_round": self.history}
        if not cfg.dp:
            info["n_records"] = int(sum(self.outcomes[p].n_train for p in self.trained))
        else:
            info["dp"] = {"noise_multiplier": self.noise_multiplier, "clip_norm": cfg.clip_norm,
                          "sensitivity": 2.0 * cfg.clip_norm, "sigma": self.noise_multiplier * 2.0 * cfg.clip_norm,
                          "target_epsilon": cfg.epsilon, "delta": cfg.delta, "unit": "client"}
            out["update_dp"] = {"noise_multiplier": self.noise_multiplier, "asked": self.asked_rounds}
        out["aggregate"] = info
        return out
