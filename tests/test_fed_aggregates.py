"""fed_ncm and fed_ridge: clients share sufficient statistics, never records.

Unit: the statistics of any split of the records sum to the pooled ones, and the models
built from the sums are the models of the pooled records (NCM, closed-form ridge); the
random-features map is seeded and shared; lam = "auto" picks by the held-out error that
the statistics alone give.  End to end on real Flower + Ray: releases and both aggregate
flows in ONE run, fed_ncm / fed_ridge equal to their centralized counterparts under IID
and Dirichlet(0.1) partitions, and the audit shows only d x C / d x d statistics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedsim.classifiers import NCMClassifier, RidgeClassifier
from fedsim.classifiers.federated import AGGREGATES, FedRidge, held_out, select_lambda
from fedsim.classifiers.sufficient import ncm_statistics, ridge_statistics, sum_statistics
from fedsim.config import ScenarioError, load_scenario
from fedsim.protocol import Limits, ProtocolError, SumsReply
from fedsim.strategies import strategy_names

C = 5


def _data(n: int = 1200, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    y = gen.integers(0, C, n)
    centers = gen.normal(size=(C, d)) * 2
    return (centers[y] + gen.normal(size=(n, d))).astype(np.float32), y.astype(np.int64)


def _skewed_split(y: np.ndarray, parts: int = 4, seed: int = 1) -> list[np.ndarray]:
    """Label-skewed clients: client i holds most of classes i and i+1 (and a few others)."""
    gen = np.random.default_rng(seed)
    home = (y + gen.integers(0, 2, len(y))) % parts
    owner = np.where(gen.random(len(y)) < 0.9, home, gen.integers(0, parts, len(y)))
    return [np.flatnonzero(owner == p) for p in range(parts)]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# ------------------------------------------------------------------------------ library
def test_statistics_of_any_split_sum_to_the_pooled_ones():
    X, y = _data()
    parts = _skewed_split(y)
    for stats in (ncm_statistics, ridge_statistics):
        total = sum_statistics(stats(X[p], y[p], C) for p in parts)
        pooled = stats(X, y, C)
        assert set(total) == set(pooled)
        for k in pooled:
            assert total[k].dtype == pooled[k].dtype
            np.testing.assert_allclose(total[k], pooled[k], rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="statistics differ"):
        sum_statistics([ncm_statistics(X, y, C), ridge_statistics(X, y, C)])


def test_ridge_and_ncm_from_summed_statistics_equal_the_pooled_fit():
    X, y = _data(1500)
    X, y, Q, yq = X[:1200], y[:1200], X[1200:], y[1200:]
    parts = _skewed_split(y)
    ridge = RidgeClassifier.from_statistics(sum_statistics(ridge_statistics(X[p], y[p], C) for p in parts), lam=3.0)
    central = RidgeClassifier(lam=3.0).fit(X, y)
    assert _rel(ridge.get_state()["coef"], central.get_state()["coef"]) <= 1e-5
    assert (ridge.predict(Q) == central.predict(Q)).all() and central.score(Q, yq) > 0.8
    # the shipped state predicts like the model (client-side evaluation)
    assert (RidgeClassifier().set_state(ridge.get_state()).predict(Q) == ridge.predict(Q)).all()
    # partial_fit over the clients' batches reaches the same ridge
    streamed = RidgeClassifier(lam=3.0)
    for p in parts:
        streamed.partial_fit(X[p], y[p])
    assert _rel(streamed.get_state()["coef"], central.get_state()["coef"]) <= 1e-5

    ncm = NCMClassifier.from_statistics(sum_statistics(ncm_statistics(X[p], y[p], C) for p in parts))
    pooled = NCMClassifier().fit(X, y)
    np.testing.assert_allclose(ncm.means(), pooled.means(), rtol=1e-12)
    assert (ncm.predict(Q) == pooled.predict(Q)).all()


def test_classes_without_records_are_left_out_as_in_fit():
    X, y = _data()
    keep = y != 2
    stats = ridge_statistics(X[keep], y[keep], C)
    ridge = RidgeClassifier.from_statistics(stats, lam=1.0)
    assert ridge.classes_.tolist() == [0, 1, 3, 4]
    assert _rel(ridge.get_state()["coef"], RidgeClassifier(lam=1.0).fit(X[keep], y[keep]).get_state()["coef"]) <= 1e-5
    ncm = NCMClassifier.from_statistics(ncm_statistics(X[keep], y[keep], C))
    assert ncm.classes_.tolist() == [0, 1, 3, 4]


def test_random_features_are_seeded_by_the_key_and_shared():
    X, y = _data(200)
    a, b = FedRidge(random_features=64, key=11), FedRidge(random_features=64, key=11)
    fa, fb = a.feature_map(X.shape[1]), b.feature_map(X.shape[1])
    np.testing.assert_array_equal(fa.transform(X), fb.transform(X))  # two clients, one map
    assert not np.allclose(FedRidge(random_features=64, key=12).feature_map(X.shape[1]).transform(X), fa.transform(X))
    phi = fa.transform(X)
    assert phi.shape == (200, 64) and np.abs(phi).max() <= np.sqrt(2 / 64) + 1e-12
    # the map is applied before the statistics, and to the queries the client keeps
    stats, queries = a.client_statistics(X, y, X[:7], C, seed=0)
    assert stats["gram"].shape == (64, 64) and stats["xty"].shape == (64, C) and queries.shape == (7, 64)
    np.testing.assert_allclose(stats["gram"], ridge_statistics(X, y, C, fa.transform)["gram"])
    with pytest.raises(ValueError, match="federation key"):
        FedRidge(random_features=64).feature_map(X.shape[1])  # the server has no key


def test_lambda_auto_picks_by_the_held_out_error_of_the_statistics():
    X, y = _data(1000, d=24)
    parts = _skewed_split(y)
    method = AGGREGATES.create("fed_ridge", lam="auto", val_fraction=0.25)
    sent = [method.client_statistics(X[p], y[p], X[:1], C, seed=pid)[0] for pid, p in enumerate(parts)]
    total = sum_statistics(sent)
    model, info = method.fit(total)
    # the same choice made directly on the held-out records
    held = [p[held_out(len(p), 0.25, pid)] for pid, p in enumerate(parts)]
    val_idx = np.concatenate(held)
    fit_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    assert info["n_validation"] == len(val_idx)
    scale = np.trace(ridge_statistics(X[fit_idx], y[fit_idx], C)["gram"]) / X.shape[1]
    direct = {}
    for r in method.lam_grid:
        W = RidgeClassifier(lam=r * scale).fit(X[fit_idx], y[fit_idx]).get_state()["coef"]
        residual = X[val_idx].astype(np.float64) @ W - np.eye(C)[y[val_idx]]
        direct[f"{r:g}"] = float((residual ** 2).sum()) / len(val_idx)
    np.testing.assert_allclose([info["validation_mse"][k] for k in direct], list(direct.values()), rtol=1e-6)
    assert f"{info['lam_ratio']:g}" == min(direct, key=direct.get)
    # then refit on all records with the chosen penalty
    assert info["lam"] == pytest.approx(info["lam_ratio"] * np.trace(total["gram"]) / X.shape[1])
    assert _rel(model.get_state()["coef"], RidgeClassifier(lam=info["lam"]).fit(X, y).get_state()["coef"]) <= 1e-5
    with pytest.raises(ValueError, match="held-out"):
        select_lambda(total, {k: v * 0 for k, v in ridge_statistics(X, y, C).items()}, [1.0])


# ------------------------------------------------------------------------------ protocol
def _worst_ridge_change(t: np.ndarray) -> np.ndarray:
    """Squared change of (X^T X, X^T Y) when a unit record x of class k is replaced by a unit
    x' of the same class, <x, x'> = t: |xx^T - x'x'^T|_F^2 + |x - x'|^2."""
    return (2 - 2 * t ** 2) + (2 - 2 * t)


def test_dp_sensitivities_bound_one_record_replaced():
    gen = np.random.default_rng(3)
    ncm, ridge = AGGREGATES.create("fed_ncm", epsilon=1.0), AGGREGATES.create("fed_ridge", epsilon=1.0, lam=1.0)
    assert ncm.sensitivity() == 2.0 and ridge.sensitivity() == pytest.approx(np.sqrt(4.5))
    assert _worst_ridge_change(np.linspace(-1, 1, 2001)).max() == pytest.approx(4.5)
    worst = {"fed_ncm": 0.0, "fed_ridge": 0.0}
    for _ in range(300):  # random neighbours (inside the unit ball, any classes): the bound holds
        X, y = _data(40, 6, seed=int(gen.integers(1 << 30)))
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1.0)
        X2 = X.copy()
        X2[0] = gen.normal(size=6) * gen.random()
        X2[0] /= max(np.linalg.norm(X2[0]), 1.0)
        for name, fn in (("fed_ncm", ncm_statistics), ("fed_ridge", ridge_statistics)):
            a, b = fn(X, y, C), fn(X2, y, C)
            diff = sum(np.sum((np.triu(a[k] - b[k]) if k == "gram" else a[k] - b[k]) ** 2) for k in a)
            worst[name] = max(worst[name], float(np.sqrt(diff)))
    assert worst["fed_ncm"] <= 2.0 + 1e-9 and worst["fed_ridge"] <= np.sqrt(4.5) + 1e-9


def test_dp_statistics_are_clipped_noised_from_the_key_and_calibrated():
    from fedsim.anonymizers.noise import analytic_gaussian_sigma

    X, y = _data()
    X = X * 3  # norms well above clip_norm
    exact = ncm_statistics(X / np.linalg.norm(X, axis=1, keepdims=True), y, C)
    z = analytic_gaussian_sigma(2.0, 1e-5, 1.0)
    noisy = [AGGREGATES.create("fed_ncm", epsilon=2.0, key=k).client_statistics(X, y, X[:5], C, seed=7)[0]
             for k in (1, 1, 2)]
    assert np.array_equal(noisy[0]["sums"], noisy[1]["sums"])  # seeded by (key, seed)
    assert not np.array_equal(noisy[0]["sums"], noisy[2]["sums"])  # the server, without the key, cannot redo it
    assert np.array_equal(noisy[0]["counts"], exact["counts"])  # labels are public, counts exact
    resid = noisy[0]["sums"] - exact["sums"]
    assert resid.std() == pytest.approx(2.0 * z, rel=0.15)  # sigma = z x sensitivity x clip_norm
    assert AGGREGATES.create("fed_ncm", epsilon=2.0).noise_multiplier() == pytest.approx(z)
    with pytest.raises(ValueError, match="federation key"):
        AGGREGATES.create("fed_ncm", epsilon=2.0).client_statistics(X, y, X[:5], C, seed=7)
    ridge = AGGREGATES.create("fed_ridge", epsilon=2.0, lam="auto", key=1)
    stats, queries = ridge.client_statistics(X, y, X[:5], C, seed=7)
    gram = stats["gram"]
    assert np.array_equal(gram, gram.T) and (np.diag(gram) >= 0).all()
    assert np.linalg.norm(queries, axis=1).max() <= 1.0 + 1e-6  # queries clipped like the records
    SumsReply(0, len(y), 5, C, stats["counts"], stats).validate(Limits(max_rows=10**6, num_classes=C), ridge.statistic_names())
    model, info = ridge.fit(sum_statistics([stats]))
    assert info["epsilon"] == 2.0 and info["sensitivity"] == 3.0 and model.score(X[:200] / 3, y[:200]) > 0.5


def test_noised_gram_is_projected_before_the_penalty_is_chosen():
    from fedsim.classifiers.federated import nearest_psd

    gen = np.random.default_rng(0)
    A = gen.normal(size=(30, 8))
    G = A.T @ A
    assert np.allclose(nearest_psd(G), G)  # PSD already: unchanged
    noisy = G + np.triu(gen.normal(size=(8, 8)) * 50) + np.triu(gen.normal(size=(8, 8)) * 50, 1).T
    assert np.linalg.eigvalsh(noisy).min() < 0 and np.linalg.eigvalsh(nearest_psd(noisy)).min() > -1e-9


def _reply(stats: dict[str, np.ndarray], hist: np.ndarray) -> SumsReply:
    return SumsReply(partition_id=0, n_train=int(hist.sum()), n_query=3, num_classes=C, label_histogram=hist,
                     stats=stats)


def test_sums_reply_round_trip_and_rejections():
    X, y = _data(100)
    hist = np.bincount(y, minlength=C).astype(np.int64)
    method = AGGREGATES.create("fed_ridge", lam="auto")
    stats, _ = method.client_statistics(X, y, X[:1], C, seed=0)
    names = method.statistic_names()
    got = SumsReply.from_content(_reply(stats, hist).to_content())
    got.validate(Limits(max_rows=10**6, num_classes=C), names)
    assert got.dim() == X.shape[1] and set(got.stats) == set(names)
    np.testing.assert_array_equal(got.stats["gram"], stats["gram"])

    def bad(**change) -> str:
        s = {**stats, **change}
        with pytest.raises(ProtocolError) as err:
            _reply({k: v for k, v in s.items() if v is not None}, hist).validate(
                Limits(max_rows=10**6, num_classes=C, dim=X.shape[1]), names)
        return str(err.value)

    nan = stats["xty"].copy()
    nan[0, 0] = np.nan
    skew = stats["gram"].copy()
    skew[0, 1] += 1.0
    assert "NaN" in bad(xty=nan)
    assert "shape" in bad(gram=stats["gram"][:-1, :-1])
    assert "float64" in bad(xty=stats["xty"].astype(np.float32))
    assert "Gram" in bad(gram=skew)
    assert "label histogram" in bad(counts=hist + 1)
    assert "held-out" in bad(**{"val.counts": hist + 1})
    assert "expected statistics" in bad(**{"val.gram": None})
    assert "expected statistics" in bad(x_train=X.astype(np.float64))  # records are not a statistic


# ------------------------------------------------------------------------------ scenario
def test_scenario_lists_flows_and_checks_aggregate_parameters():
    sc = load_scenario(None, ['federation.strategy=["release", "fed_ncm", "fed_ridge"]',
                              'aggregates.fed_ridge.lam="auto"'])
    assert strategy_names(sc) == ["release", "fed_ncm", "fed_ridge"]
    assert strategy_names(load_scenario(None, [])) == ["release"]
    bad = {"aggregates.fed_ridge.lam=0": 'aggregates.fed_ridge: lam must be a number > 0 or "auto"',
           "aggregates.fed_ridge.alpha=1": "aggregates.fed_ridge: unknown parameter 'alpha'",
           "aggregates.fedavg.lr=1": "aggregates.fedavg: unknown aggregate method 'fedavg'; allowed: fed_ncm, "
                                     "fed_ridge",
           "aggregates.fed_ridge.key=3": "aggregates.fed_ridge: parameter 'key' cannot be set",
           'federation.strategy=["release", "release"]': "federation.strategy",
           "aggregates.fed_ridge.val_fraction=1.0": "val_fraction"}
    for override, message in bad.items():
        with pytest.raises(ScenarioError, match=message.replace("(", r"\(")):
            load_scenario(None, [override])
    with pytest.raises(ValueError, match="online runs alone"):
        strategy_names(load_scenario(None, ['federation.strategy=["online", "fed_ncm"]', "online.rounds=2"]))



def test_aggregate_parameters_sweep_like_anonymizers_but_lam_grid_is_one_value():
    from fedsim.strategies import FedNCMStrategy, FedRidgeStrategy

    sc = load_scenario(None, ['aggregates.fed_ncm.epsilon=["off", 1.0, 8.0]', "aggregates.fed_ridge.lam_grid=[0.1, 1.0]"])
    assert [p["epsilon"] for _, p, _, _ in FedNCMStrategy.plan(sc)] == ["off", 1.0, 8.0]
    assert [p["lam_grid"] for _, p, _, _ in FedRidgeStrategy.plan(sc)] == [[0.1, 1.0]]
    sc = load_scenario(None, ["aggregates.fed_ridge.lam_grid=[[0.1], [1.0, 10.0]]"])
    assert [p["lam_grid"] for _, p, _, _ in FedRidgeStrategy.plan(sc)] == [[0.1], [1.0, 10.0]]
    with pytest.raises(ScenarioError, match=r"aggregates.fed_ncm: epsilon must be a number in \(0, inf\)"):
        load_scenario(None, ['aggregates.fed_ncm.epsilon=[1.0, -2.0]'])


# ------------------------------------------------------------------------------ end to end
SCENARIO = """
name = "fedagg"
seed = 5
[federation]
num_clients = 4
strategy = ["release", "fed_ncm", "fed_ridge"]
[privacy]
metrics = false
[audit]
messages = true
save_received = true
[anonymizers.none]
[classifiers.ncm]
[classifiers.ridge]
lam = 2.0
"""
KEY = 123456789


def _run(tmp: Path, *overrides: str) -> tuple[dict, Path, object]:
    from fedsim.simulation import run_scenario

    path = tmp / "fedagg.toml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path, list(overrides))
    run_dir = run_scenario(scenario, tmp / "runs", key=KEY)
    return json.loads((run_dir / "results.json").read_text()), run_dir, scenario


@pytest.fixture(scope="module")
def iid_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("iid"), "aggregates.fed_ridge.lam=2.0", 'aggregates.fed_ncm.epsilon=["off", 4.0]')


@pytest.fixture(scope="module")
def dirichlet_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("dirichlet"), 'partition.method="dirichlet"', "partition.params.alpha=0.1",
                'aggregates.fed_ridge.lam="auto"', "aggregates.fed_ridge.random_features=128")


def _by_method(results: dict) -> dict[str, dict]:
    """Configurations by method; a DP one (``epsilon`` set) as ``<method>+dp``."""
    return {r["method"] + ("+dp" if r["params"].get("epsilon", "off") != "off" else ""): r for r in results["releases"]}


def _pooled(scenario) -> tuple[list, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from fedsim.clients.release import client_data

    data = [client_data(scenario, pid, 4, progress=False) for pid in range(4)]
    cat = np.concatenate
    return data, cat([d.x_train for d in data]), cat([d.y_train for d in data]), cat([d.x_query for d in data]), \
        cat([d.y_query for d in data])


def _check_common(results: dict) -> dict[str, dict]:
    assert results["num_failed"] == 0
    by = _by_method(results)
    plain = [r["method"] for r in results["releases"] if r["params"].get("epsilon", "off") == "off"]
    assert plain == ["none", "fed_ncm", "fed_ridge"]
    assert [r["index"] for r in results["releases"]] == list(range(len(results["releases"])))
    n_query = sum(c["n_query"] for c in results["clients"])
    for name, clf in (("fed_ncm", "ncm"), ("fed_ridge", "ridge")):
        entry = by[name]
        assert set(entry["accuracy"]) == {clf} and entry["accuracy_n"] == n_query
        assert entry["evaluation"]["mode"] == "client" and not entry["evaluation"]["queries_in_clear"]
        assert len(entry["clients"]) == 4
        assert all(c["n_released"] == 0 and clf in c["accuracy"] for c in entry["clients"])
        assert entry["timings"]["classifiers"][clf]["fit_s"] >= 0 and entry["aggregate"]["n_records"] > 0
        # accuracy loss against the none reference's classifier of the same name
        assert entry["accuracy_loss"][clf] == pytest.approx(by["none"]["accuracy"][clf] - entry["accuracy"][clf])
    return by


def test_iid_run_fed_ncm_and_fed_ridge_equal_the_pooled_models(iid_run):
    results, run_dir, scenario = iid_run
    by = _check_common(results)
    # the none release's ncm / ridge are fit on the pooled raw embeddings (server-side scoring)
    assert abs(by["fed_ncm"]["accuracy"]["ncm"] - by["none"]["accuracy"]["ncm"]) <= 1e-5
    assert abs(by["fed_ridge"]["accuracy"]["ridge"] - by["none"]["accuracy"]["ridge"]) <= 1e-5
    for pid in range(4):
        assert by["fed_ncm"]["clients"][pid]["accuracy"]["ncm"] == pytest.approx(
            by["none"]["clients"][pid]["accuracy"]["ncm"], abs=1e-12)
    # what the server received sums to the pooled statistics
    _, X, y, _, _ = _pooled(scenario)
    for name, stats in ((by["fed_ncm"]["index"], ncm_statistics(X, y, 10)),
                        (by["fed_ridge"]["index"], ridge_statistics(X, y, 10))):
        got = [np.load(f) for f in sorted((run_dir / "received" / f"sums-{name}-0").glob("client-*.npz"))]
        assert len(got) == 4
        total = sum_statistics({k: g[f"sums.{k}"] for k in stats} for g in got)
        for k, v in stats.items():
            assert _rel(total[k], v) <= 1e-5, k


def test_the_server_receives_statistics_never_records(iid_run):
    results, run_dir, scenario = iid_run
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    d = np.load(run_dir / "received" / "sums-1-0" / "client-0.npz")["sums.sums"].shape[1]
    allowed = {"sums.sums": [10, d], "sums.counts": [10], "sums.label_histogram": [10],
               "sums.gram": [d, d], "sums.xty": [d, 10]}
    sums = [r for r in audit if r["phase"] == "sums"]
    assert {r["direction"] for r in sums} == {"server->client", "client->server"} and len(sums) == 24
    for r in sums:
        if r["direction"] == "client->server":
            assert r["client"] in range(4)
            for a in r["arrays"]:
                assert allowed[a["name"]] == a["shape"], a
        else:
            assert r["arrays"] == []  # the request carries the configuration only
    # and the queries never travel in the aggregate flows: the model goes to the clients
    shipped = {(r["index"], a["name"], tuple(a["shape"])) for r in audit if r["direction"] == "server->client"
               and r["index"] > 0 for a in r["arrays"]}
    ncm = {"classifier.ncm.classes", "classifier.ncm.class_count", "classifier.ncm.sums"}
    ridge = {"classifier.ridge.classes", "classifier.ridge.class_count", "classifier.ridge.coef"}
    assert {(i, n) for i, n, _ in shipped} == {(i, n) for i in (1, 2) for n in ncm} | {(3, n) for n in ridge}
    back = [a["name"] for r in audit if r["direction"] == "client->server" and r["index"] > 0 for a in r["arrays"]]
    assert not [n for n in back if "x_" in n or "query" in n]
    traffic = results["traffic"]["clients"]["0"]["messages"]
    assert {m["phase"] for m in traffic if m["index"] > 0} == {"sums", "evaluate"}


def test_dp_statistics_end_to_end_epsilon_in_results_and_noise_visible(iid_run):
    results, run_dir, scenario = iid_run
    by = _by_method(results)
    dp = by["fed_ncm+dp"]
    assert dp["dp"]["epsilon"] == pytest.approx(4.0, rel=1e-3) and set(dp["dp"]["clients"]) == {"0", "1", "2", "3"}
    assert dp["aggregate"]["epsilon"] == 4.0 and dp["aggregate"]["sensitivity"] == 2.0
    assert "dp" not in by["fed_ncm"]  # no noise, no guarantee
    # the sums the server received are the clipped sums plus noise of the calibrated scale
    _, X, y, _, _ = _pooled(scenario)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1.0)
    got = [np.load(f) for f in sorted((run_dir / "received" / f"sums-{dp['index']}-0").glob("client-*.npz"))]
    total = sum_statistics({k: g[f"sums.{k}"] for k in ("sums", "counts")} for g in got)
    exact = ncm_statistics(X, y, 10)
    assert np.array_equal(total["counts"], exact["counts"])
    sigma = dp["aggregate"]["noise_multiplier"] * 2.0 * np.sqrt(4)  # 4 clients' noise
    assert (total["sums"] - exact["sums"]).std() == pytest.approx(sigma, rel=0.2)
    assert dp["accuracy"]["ncm"] > 0.5 * by["fed_ncm"]["accuracy"]["ncm"]


@pytest.mark.slow  # a second Ray run; the IID run keeps the flows in the default suite
def test_dirichlet_run_with_auto_lambda_and_random_features(dirichlet_run):
    results, run_dir, scenario = dirichlet_run
    by = _check_common(results)
    assert abs(by["fed_ncm"]["accuracy"]["ncm"] - by["none"]["accuracy"]["ncm"]) <= 1e-5
    hists = np.array([c["label_histogram"] for c in results["clients"]])
    assert (hists == 0).sum() > 0  # alpha = 0.1: clients miss whole classes
    # the centralized ridge on the pooled records through the same (key-seeded) features
    data, X, y, Q, yq = _pooled(scenario)
    info = by["fed_ridge"]["aggregate"]
    assert info["random_features"] == 128 and info["n_features"] == 128 and set(info["validation_mse"])
    method = FedRidge(lam="auto", random_features=128, key=KEY)
    fmap = method.feature_map(X.shape[1])
    central = RidgeClassifier.from_statistics(ridge_statistics(X, y, 10, fmap.transform), lam=info["lam"])
    assert abs(central.score(fmap.transform(Q).astype(np.float32), yq) - by["fed_ridge"]["accuracy"]["ridge"]) <= 1e-5
    # the choice of lambda: the same as on the pooled held-out shares
    from fedsim.seeding import derive_seed

    sent = [method.client_statistics(d.x_train, d.y_train, d.x_query[:1], 10,
                                     seed=derive_seed(scenario.seed, "held-out", d.partition_id))[0] for d in data]
    _, again = method.fit(sum_statistics(sent))
    assert again["lam_ratio"] == info["lam_ratio"] and again["lam"] == pytest.approx(info["lam"], rel=1e-9)
    d = X.shape[1]
    shapes = {tuple(a["shape"]) for line in (run_dir / "audit.jsonl").read_text().splitlines()
              for r in [json.loads(line)] if r["phase"] == "sums" and r["direction"] == "client->server"
              for a in r["arrays"] if a["name"].rsplit(".", 1)[1] in ("gram", "xty")}  # val.* too
    assert shapes == {(128, 128), (128, 10)} and d != 128  # the server sees feature statistics only
