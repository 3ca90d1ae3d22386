"""fedavg_head: an FC head trained with Flower's FedAvg / FedProx, with client-level DP on
the updates.

Unit (no Ray): local training is seeded and learns; FedProx's term pulls towards the global
model; the DP step clips with Flower's function and adds the calibrated noise from the key;
the server's round on real Flower messages (Flower's FedAvg.aggregate_train) equals
centralized training for one client and the weighted mean for several, and rejects a bad
reply with its reason; bad configurations stop before Ray starts.  End to end on real
Flower + Ray (ONE run for the default suite): fed_ncm and four fedavg_head configurations
(FedAvg / FedProx x without / with DP) on the same federation -- the head learns, the
updates the server received are the clients' seeded local training (and, with DP, clipped
and noised on the client), and the epsilon per client and round is the accountant's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, Metadata

from fedsim.clients import faults
from fedsim.clients.fedavg import head, head_config, initial_state, local_train, local_update, privatise
from fedsim.clients.release import ClientData
from fedsim.config import FaultConfig, ScenarioError, fedavg_head_configs, load_scenario
from fedsim.privacy.accountant import composed_epsilon
from fedsim.protocol import Limits, ProtocolError, Request, UpdateReply
from fedsim.seeding import derive_seed
from fedsim.strategies import FedAvgHeadStrategy
from fedsim.strategies.federation import Federation

C, D = 4, 12
KEY = 987654321


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(size=(C, D)) * 2
    y = gen.integers(0, C, n)
    return (centers[y] + gen.normal(size=(n, D))).astype(np.float32), y.astype(np.int64)


def _client(pid: int, n: int = 200) -> ClientData:
    X, y = _blobs(n, 10 + pid)
    Q, yq = _blobs(50, 100 + pid)
    return ClientData(pid, X, y, Q, yq, np.bincount(y, minlength=C), {"extract_s": 0.0}, "off")


def _norm(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(((a[k].astype(np.float64) - b[k]) ** 2).sum() for k in a)))


@pytest.fixture(autouse=True)
def _one_thread():
    """Local training is compared across processes: the same thread count as a Ray client."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------ client
def test_local_training_is_seeded_and_learns():
    data = _client(0, 400)
    cfg = head_config({"local_epochs": 3})
    init = initial_state(D, C, 0, seed=1)
    assert set(init) == {"out.weight", "out.bias"} and init["out.weight"].shape == (C, D)
    assert all(np.array_equal(init[k], initial_state(D, C, 0, seed=1)[k]) for k in init)
    a, loss_a = local_train(init, data.x_train, data.y_train, C, cfg, seed=5)
    b, loss_b = local_train(init, data.x_train, data.y_train, C, cfg, seed=5)
    c, _ = local_train(init, data.x_train, data.y_train, C, cfg, seed=6)
    assert all(np.array_equal(a[k], b[k]) for k in a) and loss_a == loss_b  # seeded
    assert not np.array_equal(a["out.weight"], c["out.weight"])  # another shuffle
    assert all(np.array_equal(init[k], initial_state(D, C, 0, seed=1)[k]) for k in init)  # input untouched
    assert head(cfg, a, C).score(data.x_query, data.y_query) > 0.9 and loss_a < 0.5
    hidden = head_config({"hidden": 8})
    h, _ = local_train(initial_state(D, C, 8, seed=1), data.x_train, data.y_train, C, hidden, seed=5)
    assert h["hidden.weight"].shape == (8, D) and h["out.weight"].shape == (C, 8)


def test_fedprox_term_pulls_the_local_model_towards_the_global_one():
    data = _client(1)
    init = initial_state(D, C, 0, seed=2)
    drift = {mu: _norm(local_train(init, data.x_train, data.y_train, C,
                                   head_config({"local_epochs": 3, "proximal_mu": mu}), seed=3)[0], init)
             for mu in (0.0, 0.1, 1.0)}
    assert drift[0.0] > drift[0.1] > drift[1.0] > 0


def test_dp_clips_with_flowers_function_and_adds_the_calibrated_noise():
    sent = initial_state(D, C, 0, seed=1)
    far = {k: v + 10.0 for k, v in sent.items()}  # an update of norm >> clip_norm
    clipped = privatise(far, sent, clip_norm=0.5, sigma=0.0, rng=np.random.default_rng(0))
    assert _norm(clipped, sent) == pytest.approx(0.5, rel=1e-5)
    big = {"w": np.zeros((200, 100), np.float32)}
    noisy = privatise(big, big, clip_norm=1.0, sigma=0.3, rng=np.random.default_rng(0))
    assert noisy["w"].dtype == np.float32 and noisy["w"].std() == pytest.approx(0.3, rel=0.03)
    # the client: sigma = z x 2 clip_norm, the noise drawn from the federation key
    params = {"rounds": 2, "noise_multiplier": 0.7, "clip_norm": 0.5}
    scenario = load_scenario(None, ["federation.num_clients=1",
                                    *(f"aggregates.fedavg_head.{k}={v}" for k, v in params.items())])
    req = Request("fedavg", 0, "fedavg_head", params)
    data = _client(0)
    reply = local_update(scenario, data, req, KEY)
    again = local_update(scenario, data, req, KEY)
    other = local_update(scenario, data, req, KEY + 1)
    assert reply.num_examples == 1 and reply.n_train == 0 and reply.label_histogram is None and reply.train_loss is None
    assert all(np.array_equal(reply.weights[k], again.weights[k]) for k in reply.weights)
    assert not np.array_equal(reply.weights["out.weight"], other.weights["out.weight"])
    with pytest.raises(ValueError, match="federation key"):
        local_update(scenario, data, req, None)
    with pytest.raises(ValueError, match="does not list"):  # a server asking a client to drop its noise
        local_update(scenario, data, Request("fedavg", 0, "fedavg_head", {**params, "noise_multiplier": 0.0}), KEY)


def test_epsilon_gives_the_noise_multiplier_the_accountant_composes_back():
    for eps, rounds in ((1.0, 1), (8.0, 4)):
        cfg = head_config({"epsilon": eps, "rounds": rounds, "delta": 1e-5})
        z = cfg.resolved_noise_multiplier()
        assert composed_epsilon([z] * rounds, 1e-5) == pytest.approx(eps, rel=1e-3)
    assert head_config({}).resolved_noise_multiplier() == 0.0 and not head_config({}).dp


# ------------------------------------------------------------------------------ server, real Flower messages
@pytest.fixture
def run_identity(monkeypatch):
    """Messages made outside a running ServerApp need a run id, as inside one."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def _strategy(params: dict, n_clients: int) -> tuple[FedAvgHeadStrategy, object]:
    scenario = load_scenario(None, [f"federation.num_clients={n_clients}", "federation.min_clients=1",
                                    *(f"aggregates.fedavg_head.{k}={v}" for k, v in params.items())])
    fed = Federation([100 + p for p in range(n_clients)], quorum=1, timeout=60.0)
    return FedAvgHeadStrategy(fed, scenario, 0, "fedavg_head", params), scenario


def _round(strategy, scenario, server_round: int, arrays: ArrayRecord, clients: list[ClientData],
           malformed: dict[int, str] | None = None):
    """One round as the ServerApp runs it, the clients answering in this process."""
    replies = []
    for msg in strategy.configure_train(server_round, arrays, ConfigRecord(), None):
        assert msg.metadata.message_type == "train.fedavg"
        assert set(msg.content.array_records) == {"arrays"} and msg.content["config"]["server-round"] == server_round
        node = msg.metadata.dst_node_id
        content = local_update(scenario, clients[node - 100], Request.from_message(msg), KEY).to_content()
        if malformed and node - 100 in malformed:
            content = faults.corrupt(content, FaultConfig(kind="malformed", how=malformed[node - 100]))
        meta = Metadata(run_id=1, message_id=f"r{node}", src_node_id=node, dst_node_id=0, reply_to_message_id="q",
                        group_id=msg.metadata.group_id, created_at=0.0, ttl=60.0, message_type="train.fedavg")
        replies.append(Message(content, metadata=meta))
    return strategy.aggregate_train(server_round, replies)


def test_one_client_fedavg_equals_centralized_training(run_identity):
    params = {"rounds": 1, "local_epochs": 1}
    strategy, scenario = _strategy(params, 1)
    data = _client(0)
    arrays, metrics = _round(strategy, scenario, 1, ArrayRecord(), [data])
    init = initial_state(D, C, 0, derive_seed(scenario.seed, "fedavg_head", "init"))
    central, loss = local_train(init, data.x_train, data.y_train, C, head_config(params),
                                seed=derive_seed(scenario.seed, "fedavg_head", 0, 0))
    assert all(np.array_equal(arrays[k].numpy(), central[k]) for k in central)  # Flower's mean of one: exact
    assert metrics["train_loss"] == pytest.approx(loss) and metrics["n_clients"] == 1
    assert strategy.fitted["fc"].score(data.x_query, data.y_query) == head(head_config(params), central, C).score(
        data.x_query, data.y_query)


def test_rounds_average_by_record_count_and_reject_a_bad_update(run_identity):
    params = {"rounds": 2, "proximal_mu": 0.1}
    strategy, scenario = _strategy(params, 3)
    clients = [_client(p, n) for p, n in enumerate((100, 200, 300))]
    arrays, _ = _round(strategy, scenario, 1, ArrayRecord(), clients)
    assert strategy.flower.__class__.__name__ == "FedProx"
    cfg = head_config(params)
    init = initial_state(D, C, 0, derive_seed(scenario.seed, "fedavg_head", "init"))
    local = [local_train(init, d.x_train, d.y_train, C, cfg,
                         derive_seed(scenario.seed, "fedavg_head", 0, d.partition_id))[0] for d in clients]
    for k in init:
        mean = sum(n * w[k] for n, w in zip((100, 200, 300), local)) / 600
        np.testing.assert_allclose(arrays[k].numpy(), mean, rtol=1e-5, atol=1e-6)
    # round 2: client 1 sends NaN -> rejected with the reason, left out; the others are averaged
    glob = {k: v.numpy() for k, v in arrays.items()}
    arrays2, metrics = _round(strategy, scenario, 2, arrays, clients, malformed={1: "nan"})
    assert metrics["n_clients"] == 2
    [failure] = strategy.fed.failures
    assert failure["client"] == 1 and failure["phase"] == "fedavg" and "NaN" in failure["reason"]
    local2 = [local_train(glob, d.x_train, d.y_train, C, cfg, derive_seed(scenario.seed, "fedavg_head", 1,
                                                                          d.partition_id))[0]
              for d in (clients[0], clients[2])]
    mean2 = (100 * local2[0]["out.weight"] + 300 * local2[1]["out.weight"]) / 400
    np.testing.assert_allclose(arrays2["out.weight"].numpy(), mean2, rtol=1e-5, atol=1e-6)
    assert strategy.asked_rounds == [[0, 1, 2], [0, 1, 2]] and sorted(strategy.trained) == [0, 1, 2]


def test_dp_rounds_weigh_every_client_equally(run_identity):
    strategy, scenario = _strategy({"rounds": 1, "noise_multiplier": 0.5, "clip_norm": 0.2}, 2)
    arrays, metrics = _round(strategy, scenario, 1, ArrayRecord(), [_client(0, 100), _client(1, 300)])
    assert metrics["n_clients"] == 2 and "train_loss" not in metrics
    result = strategy.result()
    assert result["update_dp"] == {"noise_multiplier": 0.5, "asked": [[0, 1]]}
    assert result["aggregate"]["dp"]["sigma"] == pytest.approx(0.5 * 2 * 0.2)
    assert all(o.n_train == 0 and o.label_histogram == [] for o in result["outcomes"].values())


def _update(**change) -> UpdateReply:
    weights = initial_state(D, C, 0, seed=0)
    base = dict(partition_id=0, weights=weights, num_examples=10, n_train=10, n_query=3, num_classes=C,
                label_histogram=np.array([4, 3, 2, 1], np.int64), train_loss=0.5)
    return UpdateReply(**{**base, **change})


def test_update_replies_are_validated_whole():
    shapes = {"out.weight": (C, D), "out.bias": (C,)}
    limits = Limits(max_rows=100, dim=D, num_classes=C)
    got = UpdateReply.from_content(_update().to_content())
    got.validate(limits, shapes, uniform_weight=False)
    assert got.dim() == D and got.train_loss == 0.5 and got.label_histogram.tolist() == [4, 3, 2, 1]
    bad_w = initial_state(D, C, 0, seed=0)
    bad_w["out.bias"] = bad_w["out.bias"].astype(np.float64)
    nan_w = initial_state(D, C, 0, seed=0)
    nan_w["out.weight"][0, 0] = np.inf
    cases = [
        (_update(weights={"out.weight": bad_w["out.weight"]}), False, "expected parameters"),
        (_update(weights=bad_w), False, "float32"),
        (_update(weights=nan_w), False, "NaN or infinite"),
        (_update(num_examples=11), False, "num-examples 11 must equal n_train"),
        (_update(num_examples=1000, n_train=1000, label_histogram=np.array([1000, 0, 0, 0])), False,
         "max_release_rows"),
        (_update(label_histogram=np.array([4, 3, 2, 2])), False, "label_histogram"),
        (_update(num_classes=5), False, "num_classes"),
        (_update(), True, "differential privacy"),  # a DP reply carries the weight 1 and nothing unnoised
    ]
    for reply, uniform, reason in cases:
        with pytest.raises(ProtocolError, match=reason):
            reply.validate(limits, shapes, uniform_weight=uniform)
    dp_reply = _update(num_examples=1, n_train=0, label_histogram=None, train_loss=None)
    dp_reply.validate(limits, shapes, uniform_weight=True)
    content = _update().to_content()
    content["metrics"]["num-examples"] = 2.5
    with pytest.raises(ProtocolError, match="whole number"):
        UpdateReply.from_content(content)


# ------------------------------------------------------------------------------ configuration
def test_bad_configurations_stop_with_one_error_naming_the_key():
    bad = {"aggregates.fedavg_head.lr=0": "aggregates.fedavg_head.lr = 0.0 must be > 0",
           "aggregates.fedavg_head.momentum=1.0": "aggregates.fedavg_head.momentum",
           "aggregates.fedavg_head.epochs=2": "unknown key aggregates.fedavg_head.epochs; allowed keys in "
                                              "aggregates.fedavg_head: rounds, local_epochs",
           'aggregates.fedavg_head.epsilon="high"': 'epsilon = \'high\' must be "off" or a number > 0',
           "aggregates.fedavg_head.rounds=[2, 0]": "aggregates.fedavg_head.rounds = 0 must be >= 1",
           'aggregates.fedavg_head.normalize="zscore"': "must be one of l2, none",
           "aggregates.fedavg.lr=1": "unknown aggregate method 'fedavg'; allowed: fed_ncm, fed_ridge, fedavg_head"}
    for override, message in bad.items():
        with pytest.raises(ScenarioError, match=message.replace("(", r"\(").replace(".", r"\.")):
            load_scenario(None, [override])
    with pytest.raises(ScenarioError, match="epsilon or noise_multiplier, not both"):
        load_scenario(None, ["aggregates.fedavg_head.epsilon=1.0", "aggregates.fedavg_head.noise_multiplier=1.0"])
    sweep = load_scenario(None, ['aggregates.fedavg_head.epsilon=["off", 8.0]',
                                 "aggregates.fedavg_head.proximal_mu=[0, 0.5]"])
    configs = fedavg_head_configs(sweep.aggregates["fedavg_head"])
    assert [(p["proximal_mu"], c.dp) for p, c in configs] == [(0, False), (0.5, False), (0, True), (0.5, True)]


def test_scenario_conflicts_stop_before_ray_starts(tmp_path):
    import ray

    from fedsim.simulation import run_scenario

    scenario = load_scenario(None, ['federation.strategy=["fed_ncm", "fedavg_head"]',
                                    "federation.secure_aggregation.enabled=true",
                                    "federation.secure_aggregation.max_records=5000",
                                    "federation.secure_aggregation.max_norm=100.0"])
    with pytest.raises(ScenarioError, match="federation.strategy: fedavg_head sends each client's update"):
        run_scenario(scenario, tmp_path / "runs")
    assert not ray.is_initialized()


# ------------------------------------------------------------------------------ end to end
SCENARIO = """
name = "fedavg"
seed = 5
[federation]
num_clients = 4
strategy = ["fed_ncm", "fedavg_head"]
[privacy]
metrics = false
[audit]
messages = true
save_received = true
[classifiers.ncm]
[aggregates.fed_ncm]
[aggregates.fedavg_head]
rounds = 3
evaluate_every = 1
proximal_mu = [0.0, 0.5]
epsilon = ["off", 8.0]
"""


@pytest.fixture(scope="module")
def fedavg_run(tmp_path_factory):
    from fedsim.simulation import run_scenario

    tmp = tmp_path_factory.mktemp("fedavg")
    path = tmp / "fedavg.toml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    run_dir = run_scenario(scenario, tmp / "runs", key=KEY)
    return json.loads((run_dir / "results.json").read_text()), run_dir, scenario


def _config(results: dict, mu: float, dp: bool) -> dict:
    return next(r for r in results["releases"] if r["method"] == "fedavg_head"
                and r["params"]["proximal_mu"] == mu and (r["params"]["epsilon"] != "off") == dp)


def _received(run_dir: Path, index: int, round_index: int, pid: int) -> dict[str, np.ndarray]:
    got = np.load(run_dir / "received" / f"fedavg-{index}-{round_index}" / f"client-{pid}.npz")
    return {k.removeprefix("arrays."): got[k] for k in got.files}


def _local_models(scenario, params: dict) -> tuple[list[ClientData], dict, list[dict]]:
    from fedsim.clients.release import client_data

    data = [client_data(scenario, pid, 4, progress=False) for pid in range(4)]
    init = initial_state(data[0].x_train.shape[1], 10, 0, derive_seed(scenario.seed, "fedavg_head", "init"))
    cfg = head_config(params)
    return data, init, [local_train(init, d.x_train, d.y_train, 10, cfg,
                                    derive_seed(scenario.seed, "fedavg_head", 0, d.partition_id))[0] for d in data]


def test_fedavg_head_learns_and_is_scored_by_the_clients(fedavg_run):
    results, run_dir, scenario = fedavg_run
    assert results["num_failed"] == 0
    assert [r["method"] for r in results["releases"]] == ["fed_ncm"] + ["fedavg_head"] * 4
    ncm = results["releases"][0]["accuracy"]["ncm"]
    for mu in (0.0, 0.5):
        entry = _config(results, mu, dp=False)
        acc = entry["accuracy"]["fc"]
        assert acc > 0.7 and acc > ncm - 0.1, (acc, ncm)  # chance is 0.1
        assert entry["evaluation"]["mode"] == "client" and not entry["evaluation"]["queries_in_clear"]
        assert len(entry["clients"]) == 4 and all(0 <= c["accuracy"]["fc"] <= 1 for c in entry["clients"])
        assert entry["accuracy_n"] == sum(c["n_query"] for c in results["clients"])
        info = entry["aggregate"]
        assert info["strategy"] == ("FedProx" if mu else "FedAvg") and info["rounds"] == 3
        assert [r["round"] for r in info["per_round"]] == [1, 2, 3] and all("accuracy" in r for r in info["per_round"])
        assert info["per_round"][-1]["accuracy"] == acc
        assert info["n_records"] == sum(c["n_train"] for c in results["clients"])
        assert all(c["timings"]["train_s"] > 0 for c in entry["clients"])
    # what crossed the wire: the model and the clients' heads, never a record or a query
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    d = _received(run_dir, 1, 0, 0)["out.weight"].shape[1]
    heads = {"arrays.out.weight": [10, d], "arrays.out.bias": [10]}
    rounds = [r for r in audit if r["phase"] == "fedavg"]
    assert len(rounds) == 4 * 3 * 4 * 2  # configurations x rounds x clients x directions
    for r in rounds:  # round 1: no model sent yet (every client starts from the seeded init)
        sent = r["direction"] == "client->server" or r["round"] > 0
        assert {a["name"]: a["shape"] for a in r["arrays"]} == (heads if sent else {})
    assert not [a for r in audit if r["index"] > 0 for a in r["arrays"] if "x_" in a["name"] or "query" in a["name"]]
    traffic = results["traffic"]["clients"]["0"]["messages"]
    assert {m["phase"] for m in traffic if m["index"] > 0} == {"fedavg", "evaluate"}
    assert all(m["sent_bytes"] >= 4 * 10 * (d + 1) for m in traffic if m["phase"] == "fedavg")


def test_the_updates_are_the_clients_seeded_local_training(fedavg_run):
    """FedAvg round 1 = the record-weighted mean of the clients' local models, which the test
    recomputes from their data and seeds (and FedProx's differ from FedAvg's)."""
    results, run_dir, scenario = fedavg_run
    plain, prox = _config(results, 0.0, False), _config(results, 0.5, False)
    data, init, local = _local_models(scenario, plain["params"])
    _, _, local_prox = _local_models(scenario, prox["params"])
    for pid in range(4):
        got, got_prox = _received(run_dir, plain["index"], 0, pid), _received(run_dir, prox["index"], 0, pid)
        for k in init:
            np.testing.assert_allclose(got[k], local[pid][k], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got_prox[k], local_prox[pid][k], rtol=1e-5, atol=1e-6)
        assert _norm(got_prox, init) < _norm(got, init)  # the proximal term held it nearer the start
    n = np.array([d.n_train for d in data], np.float64)
    mean = {k: sum(w * m[k] for w, m in zip(n / n.sum(), local)).astype(np.float32) for k in init}
    model = head(head_config(plain["params"]), mean, 10)
    correct = sum(int((model.predict(d.x_query) == d.y_query).sum()) for d in data)
    assert plain["aggregate"]["per_round"][0]["accuracy"] == correct / sum(d.n_query for d in data)


def test_dp_updates_are_noised_on_the_client_and_accounted_per_round(fedavg_run):
    results, run_dir, scenario = fedavg_run
    for mu in (0.0, 0.5):
        entry = _config(results, mu, dp=True)
        cfg = head_config(entry["params"])
        z = cfg.resolved_noise_multiplier()
        dp = entry["dp"]
        assert dp["noise_multiplier"] == pytest.approx(z) and dp["delta"] == scenario.privacy.dp_delta
        assert dp["unit"] == "client" and set(dp["clients"]) == {"0", "1", "2", "3"}
        for c in dp["clients"].values():
            per = c["epsilon_per_round"]
            assert per == sorted(per) and per[0] < per[1] < per[2]  # grows with every round taken part in
            assert per == [pytest.approx(composed_epsilon([z] * k, dp["delta"]), rel=1e-9) for k in (1, 2, 3)]
            assert c["epsilon"] == per[-1] == pytest.approx(8.0, rel=1e-3)  # the target, after all rounds
        assert entry["aggregate"]["dp"]["sigma"] == pytest.approx(z * 2 * cfg.clip_norm)
    assert (run_dir / "epsilon.png").is_file()
    # what the server received in round 1 is the clipped local model plus noise of the calibrated scale
    entry = _config(results, 0.0, dp=True)
    cfg = head_config(entry["params"])
    sigma = cfg.resolved_noise_multiplier() * 2 * cfg.clip_norm
    _, init, local = _local_models(scenario, entry["params"])
    for pid in range(4):
        clipped = privatise(local[pid], init, cfg.clip_norm, 0.0, np.random.default_rng(0))
        got = _received(run_dir, entry["index"], 0, pid)
        residual = np.concatenate([(got[k] - clipped[k]).ravel() for k in init])
        assert residual.std() == pytest.approx(sigma, rel=0.05) and abs(residual.mean()) < 0.1 * sigma


@pytest.mark.slow  # a second Ray run; the run above keeps fedavg_head in the default suite
def test_sampled_rounds_a_rejected_update_and_the_epsilon_of_each_client(tmp_path):
    """Half of the clients per round (fedsim's participation plan), one client's update NaN in
    one round: rejected with its reason and left out; each client's epsilon grows only in the
    rounds it was asked (a rejected update was still seen: it counts)."""
    from fedsim.config import ParticipationConfig
    from fedsim.simulation import run_scenario
    from fedsim.strategies.participation import Participation

    rounds, seed = 4, 5
    plan = Participation(ParticipationConfig(fraction=0.5), seed, 900.0)
    bad = plan.plan(1, list(range(4))).asked[0]  # asked in round 2: its update is NaN there
    path = tmp_path / "sampled.toml"
    path.write_text(SCENARIO.replace('strategy = ["fed_ncm", "fedavg_head"]', 'strategy = "fedavg_head"')
                    .replace("proximal_mu = [0.0, 0.5]\nepsilon = [\"off\", 8.0]\n", "noise_multiplier = 0.3\n")
                    .replace("rounds = 3", f"rounds = {rounds}")
                    + f"[federation.participation]\nfraction = 0.5\n[[federation.faults]]\nclient = {bad}\n"
                      f'phase = "fedavg"\nkind = "malformed"\nhow = "nan"\nround = 1\n')
    scenario = load_scenario(path, ["federation.min_clients=2"])
    run_dir = run_scenario(scenario, tmp_path / "runs", key=KEY)  # completes; the failed client is reported
    results = json.loads((run_dir / "results.json").read_text())
    [failure] = results["failures"]
    assert failure["client"] == bad and failure["phase"] == "fedavg" and "NaN" in failure["reason"]
    [entry] = results["releases"]
    asked = [plan.plan(r, [p for p in range(4) if p != bad or r <= 1]).asked for r in range(rounds)]
    assert [rec["took_part"] for rec in entry["participation"]] == [[p for p in a if not (p == bad and r == 1)]
                                                                     for r, a in enumerate(asked)]
    z, dp = 0.3, entry["dp"]
    for pid, c in dp["clients"].items():
        counts = np.cumsum([int(pid) in a for a in asked])
        assert c["releases"] == counts[-1] and c["epsilon_per_round"] == [
            pytest.approx(composed_epsilon([z] * int(k), dp["delta"]) if k else 0.0) for k in counts]
    assert entry["accuracy"]["fc"] == entry["accuracy"]["fc"]  # scored by the clients that trained
