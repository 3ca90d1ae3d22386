"""fed_ncm and fed_ridge through Flower's SecAgg+ (``[federation.secure_aggregation]``).

Unit: the statistics' scaling to the public bounds and back (SecureEncoding), the
protocol's sizes and the scenario checks.  End to end on real Flower + Ray: the models
equal the centralized ones under IID and Dirichlet(0.1) partitions, the recovered sums are
the pooled ones within the reported quantisation bound, the audit shows masked vectors
only, and a client that drops after sharing its keys still leaves the exact sum of the
others.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from fedsim.classifiers.federated import AGGREGATES, FedNCM, FedRidge
from fedsim.classifiers.sufficient import ncm_statistics, ridge_statistics, sum_statistics
from fedsim.config import ScenarioError, SecureAggregationConfig, load_scenario
from fedsim.protocol import ProtocolError, SecureEncoding
from fedsim.strategies.federation import FederationError
from fedsim.strategies.secure import protocol_sizes

C = 5
SECURE = SecureAggregationConfig(enabled=True, max_records=400, max_norm=10.0, quantization_range=2 ** 22)


def _data(n: int, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True) * gen.uniform(1, 10, (n, 1))).astype(np.float32), \
        gen.integers(0, C, n)


# ------------------------------------------------------------------------------ unit
def test_encoding_scales_to_the_public_bounds_and_back():
    method = AGGREGATES.create("fed_ridge", lam="auto")
    enc = SecureEncoding.create(method, SECURE)
    assert enc.names == method.statistic_names()
    assert enc.bounds == {"gram": 400 * 100.0, "xty": 4000.0, "counts": 400.0, "val.gram": 40000.0,
                          "val.xty": 4000.0, "val.counts": 400.0}
    assert enc.scale("gram") == 40000.0 / 8.0
    parts = [method.client_statistics(*_data(300, seed=s), np.zeros((1, 8)), C, seed=s)[0] for s in range(3)]
    arrays = [enc.encode(p) for p in parts]
    assert all(len(a) == 6 and max(float(np.abs(v).max()) for v in a) <= 8.0 for a in arrays)
    # SecAgg+ gives the mean over the clients: decode multiplies by their number
    mean = [np.mean([a[i] for a in arrays], axis=0) for i in range(6)]
    total, exact = enc.decode(mean, 3), sum_statistics(parts)
    for name in enc.names:
        assert total[name].dtype == exact[name].dtype and total[name].shape == exact[name].shape
        np.testing.assert_allclose(total[name], exact[name], rtol=1e-12, atol=1e-9)
    assert np.array_equal(total["gram"], total["gram"].T)
    # a step of quantisation noise per client stays within the bound; counts round back exactly
    step = {n: 2 * enc.bounds[n] / enc.quantization_range for n in enc.names}
    noisy = [m + (1 - 1e-9) * step[n] / enc.scale(n) for n, m in zip(enc.names, mean)]  # the worst case
    got = enc.decode(noisy, 3)
    bound = enc.error_bound(3)
    assert bound["gram"] == pytest.approx(3 * step["gram"])
    for name in enc.names:
        assert np.abs(got[name] - exact[name]).max() <= bound[name]
    assert np.array_equal(got["counts"], exact["counts"])


def test_encoding_refuses_statistics_above_their_bound():
    enc = SecureEncoding.create(FedNCM(), SECURE)
    X, y = _data(2500)  # ~500 records per class, above max_records = 400
    with pytest.raises(ValueError, match="above its public bound"):
        enc.encode(ncm_statistics(X, y, C))
    with pytest.raises(ProtocolError, match="expected statistics"):
        enc.encode(ridge_statistics(X[:10], y[:10], C))
    # random features bound the norm whatever the embeddings: sqrt(2)
    rf = SecureEncoding.create(FedRidge(random_features=16), SECURE)
    assert rf.bounds["gram"] == pytest.approx(400 * 2.0) and rf.bounds["xty"] == pytest.approx(400 * math.sqrt(2))


def test_protocol_sizes_and_scenario_checks():
    assert protocol_sizes(SECURE, 4) == (4, 3)
    assert protocol_sizes(SecureAggregationConfig(num_shares=5, reconstruction_threshold=2), 10) == (5, 2)
    with pytest.raises(FederationError, match="at least 3 clients"):
        protocol_sizes(SECURE, 2)
    bad = {"federation.secure_aggregation.enabled=true": "max_records and max_norm must be > 0",
           "federation.secure_aggregation.num_shares=2": "must be 0 (every client asked) or >= 3",
           "federation.secure_aggregation.num_shares=3": "num_shares = 3 is above federation.num_clients = 2",
           "federation.secure_aggregation.reconstruction_threshold=1": "must be 0 (more than half",
           "federation.secure_aggregation.quantization_range=1": "must be in [2, 2**30]",
           "federation.secure_aggregation.clipping_range=0": "must be > 0"}
    for override, message in bad.items():
        with pytest.raises(ScenarioError, match=re.escape(message)):
            load_scenario(None, ["federation.num_clients=2", override])
    with pytest.raises(ScenarioError, match=re.escape("below 2**32")):
        load_scenario(None, ["federation.num_clients=8", "federation.secure_aggregation.enabled=true",
                             "federation.secure_aggregation.max_records=10", "federation.secure_aggregation.max_norm=1",
                             "federation.secure_aggregation.quantization_range=1073741824"])
    with pytest.raises(ScenarioError, match="phase"):
        load_scenario(None, ['federation.faults=[{client = 0, phase = "unmask"}]'])


def test_secaggplus_mod_passes_every_fedsim_message_type_untouched(monkeypatch):
    from flwr.app import Context, RecordDict
    from flwr.client.mod import secaggplus_mod
    from flwr.supercore.task_identity import TaskIdentity

    from fedsim.protocol import MESSAGE_TYPES, Request

    for name in ("_task_id", "_run_id", "_node_id"):  # a message needs a task outside Flower's runtime
        monkeypatch.setattr(TaskIdentity, name, 1)
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    for phase, message_type in MESSAGE_TYPES.items():
        msg = Request(phase, 0, "none", {}).to_message(1)
        seen = []

        def call_next(m, c):
            seen.append(m)
            return m

        assert secaggplus_mod(msg, context, call_next) is msg and seen == [msg], message_type
    assert not context.state.config_records  # no SecAgg+ state was started


# ------------------------------------------------------------------------------ end to end
SCENARIO = """
name = "secagg"
seed = 5
[federation]
num_clients = 4
strategy = ["release", "fed_ncm", "fed_ridge"]
[federation.secure_aggregation]
enabled = true
max_records = 5000        # the whole training set: a public bound on any client's records
max_norm = 100.0          # compact_cnn embeddings of cifar10-mini have norms below ~70
quantization_range = 536870912   # 2**29: 4 clients x 2**29 < 2**32
[privacy]
metrics = false
[audit]
messages = true
save_received = true
[anonymizers.none]
[classifiers.ncm]
[classifiers.ridge]
lam = 2.0
[aggregates.fed_ridge]
lam = 2.0
"""
KEY = 987654321


def _run(tmp: Path, *overrides: str) -> tuple[dict, Path, object, dict]:
    """One real run; ``totals`` holds the sums the server fitted from (by classifier)."""
    from fedsim.simulation import run_scenario

    totals: dict[str, dict[str, np.ndarray]] = {}

    def recording(cls):
        fit = cls.fit

        def wrapped(self, total):
            totals[self.classifier] = {k: np.array(v) for k, v in total.items()}
            return fit(self, total)

        return wrapped

    path = tmp / "secagg.toml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path, list(overrides))
    with pytest.MonkeyPatch.context() as mp:  # the ServerApp runs in this process
        for cls in (FedNCM, FedRidge):
            mp.setattr(cls, "fit", recording(cls))
        run_dir = run_scenario(scenario, tmp / "runs", key=KEY)
    return json.loads((run_dir / "results.json").read_text()), run_dir, scenario, totals


def _client_data(scenario) -> list:
    from fedsim.clients.release import client_data

    return [client_data(scenario, pid, 4, progress=False) for pid in range(4)]


def _exact(data: list, pids: list[int]) -> dict[str, dict[str, np.ndarray]]:
    X = np.concatenate([data[p].x_train for p in pids])
    y = np.concatenate([data[p].y_train for p in pids])
    return {"ncm": ncm_statistics(X, y, 10), "ridge": ridge_statistics(X, y, 10)}


def _check_exactness(results: dict, totals: dict, exact: dict, survivors: list[int]) -> dict:
    by = {r["method"]: r for r in results["releases"]}
    for name, clf in (("fed_ncm", "ncm"), ("fed_ridge", "ridge")):
        info = by[name]["secure_aggregation"]
        assert info["survivors"] == survivors and info["num_shares"] == 4 and info["reconstruction_threshold"] == 3
        assert info["quantization_range"] == 2 ** 29 and info["clipping_range"] == 8.0
        for k, v in exact[clf].items():
            err = float(np.abs(totals[clf][k] - v).max())
            assert err <= info["quantisation_error"][k], (name, k, err)
        assert np.array_equal(totals[clf]["counts"], exact[clf]["counts"])  # the bound is < 0.5: exact
    return by


@pytest.fixture(scope="module")
def iid_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("iid"))


def test_iid_models_equal_the_pooled_ones_within_the_quantisation_bound(iid_run):
    results, run_dir, scenario, totals = iid_run
    assert results["num_failed"] == 0
    by = _check_exactness(results, totals, _exact(_client_data(scenario), list(range(4))), [0, 1, 2, 3])
    n = by["fed_ncm"]["accuracy_n"]
    for name, clf in (("fed_ncm", "ncm"), ("fed_ridge", "ridge")):
        assert abs(by[name]["accuracy"][clf] - by["none"]["accuracy"][clf]) <= 1 / n + 1e-12
        assert by[name]["evaluation"]["mode"] == "client" and len(by[name]["clients"]) == 4


def test_the_server_receives_masked_vectors_never_a_clients_statistics(iid_run):
    results, run_dir, scenario, _ = iid_run
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    secure = [r for r in audit if r["index"] > 0]
    assert {r["phase"] for r in secure} == {"secagg.setup", "secagg.share_keys", "secagg.collect_masked_vectors",
                                            "secagg.unmask", "evaluate"}
    # no fedsim statistic travels: the fit reply's parameters are emptied by secaggplus_mod
    assert not [a for r in secure if r["direction"] == "client->server" for a in r["arrays"]]
    data = _client_data(scenario)
    for index, method in ((1, FedNCM()), (2, FedRidge(lam=2.0))):
        enc = SecureEncoding.create(method, scenario.federation.secure_aggregation)
        folder = run_dir / "received" / f"secagg.collect_masked_vectors-{index}-0"
        files = sorted(folder.glob("client-*.npz"))
        assert len(files) == 4
        for f in files:
            pid = int(f.stem.split("-")[1])
            got = np.load(f)
            masked = [got[f"secaggplus_configs.masked_params.{i}"] for i in range(len(enc.names) + 1)]
            own = method.client_statistics(data[pid].x_train, data[pid].y_train, data[pid].x_query[:1], 10, seed=0)[0]
            scaled = enc.encode(own)
            quantised = [(s + enc.clipping_range) * enc.quantization_range / (2 * enc.clipping_range) for s in scaled]
            for vec, stat, s, q in zip(masked[1:], (own[n] for n in enc.names), scaled, quantised):
                assert vec.shape == stat.shape
                for candidate in (stat, s, q):  # the statistic, scaled, quantised: none is what arrived
                    assert np.mean(np.abs(vec - candidate) <= 2) < 0.01
            assert masked[0].shape == (1,) and masked[0][0] != enc.quantization_range  # the weight is masked too
        # and no array of any other client reply in these configurations carries a statistic
        others = [p for p in (run_dir / "received").iterdir() if p.name.endswith(f"-{index}-0")]
        assert {p.name for p in others} <= {folder.name, f"secagg.setup-{index}-0", f"secagg.share_keys-{index}-0",
                                             f"secagg.unmask-{index}-0", f"evaluate-{index}-0"}


@pytest.fixture(scope="module")
def dirichlet_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("dirichlet"), 'partition.method="dirichlet"', "partition.params.alpha=0.1")


@pytest.mark.slow  # a second Ray run; IID and the dropout run keep SecAgg+ in the default suite
def test_dirichlet_models_equal_the_pooled_ones(dirichlet_run):
    results, run_dir, scenario, totals = dirichlet_run
    hists = np.array([c["label_histogram"] for c in results["clients"]])
    assert (hists == 0).sum() > 0  # alpha = 0.1: clients miss whole classes
    by = _check_exactness(results, totals, _exact(_client_data(scenario), list(range(4))), [0, 1, 2, 3])
    n = by["fed_ncm"]["accuracy_n"]
    for name, clf in (("fed_ncm", "ncm"), ("fed_ridge", "ridge")):
        assert abs(by[name]["accuracy"][clf] - by["none"]["accuracy"][clf]) <= 1 / n + 1e-12


def test_a_client_dropping_after_sharing_its_keys_leaves_the_exact_sum_of_the_others(tmp_path):
    results, run_dir, scenario, totals = _run(
        tmp_path, 'federation.strategy=["fed_ncm"]',
        'federation.faults=[{client = 2, phase = "secure_sums", kind = "raise"}]')
    assert [f["client"] for f in results["failures"]] == [2]
    assert results["failures"][0]["phase"] == "secure_sums"
    assert "collect_masked_vectors" in results["failures"][0]["reason"]
    entry = results["releases"][0]
    assert entry["secure_aggregation"]["survivors"] == [0, 1, 3]
    exact = _exact(_client_data(scenario), [0, 1, 3])["ncm"]
    bound = entry["secure_aggregation"]["quantisation_error"]
    for k, v in exact.items():
        assert np.abs(totals["ncm"][k] - v).max() <= bound[k], k
    assert np.array_equal(totals["ncm"]["counts"], exact["counts"])
    # client 2 took part in the key exchange, then dropped: its masks were rebuilt from shares
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]

    def answered(phase: str) -> set:
        return {r["client"] for r in audit if r["phase"] == phase and r["direction"] == "client->server"
                and not r["error"]}

    assert 2 in answered("secagg.share_keys") and 2 not in answered("secagg.collect_masked_vectors")
    assert 2 not in {r["client"] for r in audit if r["phase"] == "secagg.unmask"}
    assert set(entry["accuracy"]) == {"ncm"} and entry["accuracy"]["ncm"] > 0.3
