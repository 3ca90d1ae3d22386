"""The client's side of ``fedavg_head``: one round of local training of the FC head on the
client's own embeddings, and what leaves the client (fedsim.protocol.UpdateReply).

* The head is ``classifiers.fc``'s network (linear, or one ReLU hidden layer) with its input
  normalisation, so the model the server averages is the model every client scores with.
* Round 1 starts from a shared initialisation every client derives from the scenario seed
  (the server sends no model yet); later rounds start from the global model the server sent.
* Local training: ``local_epochs`` passes of mini-batch SGD (``lr``, ``momentum``,
  ``weight_decay``; the optimiser starts afresh every round), shuffled by a generator seeded
  from (scenario seed, round, partition id); FedProx (``proximal_mu > 0``) adds
  ``mu / 2 |w - w_global|^2`` to every batch's loss (Li et al., 2020; Flower's FedProx contract).
* Differential privacy (``epsilon`` or ``noise_multiplier``): the update ``w - w_global`` is
  clipped to L2 norm ``clip_norm`` with Flower's own clipping (the function its
  ``fixedclipping_mod`` and ``LocalDpMod`` use) and Gaussian noise of standard deviation
  ``z x 2 clip_norm`` is added to every coordinate HERE, before anything leaves: the server
  only ever sees noised updates.  The noise is drawn from the federation key (a client-side
  secret: the server, which knows the scenario seed, cannot regenerate it).  The reply then
  carries weight 1 and no record count, label histogram, loss or timing (none is noised).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from flwr.supercore.differential_privacy import compute_clip_model_update
from torch import nn

from fedsim.classifiers import FCClassifier
from fedsim.clients.keys import KEY_ENV, NODE_KEY
from fedsim.clients.release import ClientData
from fedsim.config import FedAvgHeadConfig, Scenario, fedavg_head_configs
from fedsim.protocol import Request, UpdateReply
from fedsim.seeding import derive_seed

#: the flow's method name (its requests carry it)
METHOD = "fedavg_head"
#: the ArrayRecord of the server's train.fedavg request that holds the global model (Flower's key)
MODEL_RECORD = "arrays"


def head_config(params: dict[str, Any]) -> FedAvgHeadConfig:
    """The (validated) parameters of one fedavg_head configuration."""
    configs = fedavg_head_configs(params)
    if len(configs) != 1:
        raise ValueError(f"fedavg_head: one configuration expected, got a sweep of {len(configs)}")
    return configs[0][1]


def initial_state(n_features: int, num_classes: int, hidden: int, seed: int) -> dict[str, np.ndarray]:
    """The shared starting model: ``nn.Linear``'s default init, U(+-1/sqrt(fan_in)), drawn
    from ``seed`` -- every client (and the server, were it to ask) derives the same."""
    gen = np.random.default_rng(seed)

    def layer(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        bound = 1.0 / math.sqrt(n_in)
        return (gen.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
                gen.uniform(-bound, bound, n_out).astype(np.float32))

    state = {}
    n_in = n_features
    if hidden:
        state["hidden.weight"], state["hidden.bias"] = layer(n_in, hidden)
        n_in = hidden
    state["out.weight"], state["out.bias"] = layer(n_in, num_classes)
    return state


def model(params: dict[str, Any]) -> FCClassifier:
    """An unfitted ``fc`` with this configuration's architecture, to restore a shipped head into."""
    cfg = head_config(params)
    return FCClassifier(hidden=cfg.hidden, normalize=cfg.normalize)


def head(cfg: FedAvgHeadConfig, state: dict[str, np.ndarray], num_classes: int) -> FCClassifier:
    """The ``fc`` classifier holding ``state`` (on the CPU: the head is small)."""
    clf = FCClassifier(hidden=cfg.hidden, normalize=cfg.normalize, device="cpu")
    return clf.set_state({"classes": np.arange(num_classes, dtype=np.int64),
                          "class_count": np.zeros(num_classes, np.int64), **state})


def local_train(state: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, num_classes: int,
                cfg: FedAvgHeadConfig, seed: int) -> tuple[dict[str, np.ndarray], float]:
    """(the head after ``cfg.local_epochs`` passes of SGD over (X, y) from ``state``, the mean
    cross-entropy of the last pass).  ``y`` holds class ids in [0, num_classes); ``seed``
    fixes the shuffling; ``cfg.proximal_mu > 0`` adds FedProx's proximal term around ``state``."""
    clf = head(cfg, state, num_classes)
    net = clf.net_
    x = clf._inputs(np.require(X, np.float32, ["C", "W"]))  # the normalisation scoring applies
    target = torch.from_numpy(np.asarray(y, np.int64))
    anchor = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    last = math.nan
    for _ in range(cfg.local_epochs):
        order = torch.randperm(len(x), generator=generator)
        total = torch.zeros(())
        for batch in order.split(cfg.batch_size):
            ce = loss_fn(net(x[batch]), target[batch])
            loss = ce
            if cfg.proximal_mu > 0:
                loss = ce + cfg.proximal_mu / 2 * sum(((p - a) ** 2).sum() for p, a in zip(net.parameters(), anchor))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += ce.detach() * len(batch)
        last = float(total) / max(len(x), 1)
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}, last


def privatise(new: dict[str, np.ndarray], sent: dict[str, np.ndarray], clip_norm: float, sigma: float,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``sent + clip(new - sent) + N(0, sigma^2 I)``: the update clipped to L2 norm ``clip_norm``
    (Flower's ``compute_clip_model_update``, over all parameters together), then noised."""
    names = list(new)
    arrays = [np.array(new[k], np.float32) for k in names]
    base = [np.asarray(sent[k], np.float32) for k in names]
    if any((a != b).any() for a, b in zip(arrays, base)):  # (Flower's divides by the norm: a zero update stays)
        compute_clip_model_update(arrays, base, clip_norm)
    return {k: (a + sigma * rng.standard_normal(a.shape)).astype(np.float32) for k, a in zip(names, arrays)}


def local_update(scenario: Scenario, data: ClientData, req: Request, key: int | None) -> UpdateReply:
    """One round: train from the model the server sent (round 1: the shared init), privatise
    the update when the configuration says so, and the reply.  Only a configuration this
    client's own scenario lists is run: the server cannot talk a client out of its noise."""
    cfg = head_config(req.params)
    if cfg not in [c for _, c in fedavg_head_configs(scenario.aggregates.get(METHOD, {}))]:
        raise ValueError(f"fedavg_head: the server asked for {req.params}, which this client's scenario "
                         "([aggregates.fedavg_head]) does not list")
    num_classes = len(data.label_histogram)
    sent = req.arrays.get(MODEL_RECORD) or initial_state(
        data.x_train.shape[1], num_classes, cfg.hidden, derive_seed(scenario.seed, "fedavg_head", "init"))
    t0 = time.perf_counter()
    new, loss = local_train(sent, data.x_train, data.y_train, num_classes, cfg,
                            seed=derive_seed(scenario.seed, "fedavg_head", req.round, data.partition_id))
    train_s = time.perf_counter() - t0
    if not cfg.dp:
        return UpdateReply(partition_id=data.partition_id, weights=new, num_examples=data.n_train,
                           n_train=data.n_train, n_query=data.n_query, num_classes=num_classes,
                           label_histogram=np.asarray(data.label_histogram, np.int64), train_loss=loss,
                           timings={"train_s": train_s, "extract_s": data.timings["extract_s"]},
                           embedding_cache=data.embedding_cache)
    if key is None:
        raise ValueError(f"fedavg_head with differential privacy draws its noise from the federation key, and this "
                         f"client has none: give the SuperNode --node-config \"{NODE_KEY}='/path/to/key'\" or set "
                         f"${KEY_ENV}")
    sigma = cfg.resolved_noise_multiplier() * 2.0 * cfg.clip_norm
    rng = np.random.default_rng(derive_seed(key, "dp-update", scenario.seed, req.index, req.round, data.partition_id))
    return UpdateReply(partition_id=data.partition_id, weights=privatise(new, sent, cfg.clip_norm, sigma, rng),
                       num_examples=1, n_train=0, n_query=data.n_query, num_classes=num_classes,
                       embedding_cache=data.embedding_cache)
