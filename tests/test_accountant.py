"""The privacy accountant: dp-accounting's PLD composition of Gaussian mechanisms, and the
run's figures (one-shot releases composed over configurations; online rounds)."""

from __future__ import annotations

import math

import pytest

from fedsim import anonymizers
from fedsim.privacy.accountant import composed_epsilon
from fedsim.strategies.dp import dp_entries


@pytest.mark.parametrize("eps", [0.5, 1.0, 8.0])
def test_one_release_gives_back_the_calibrated_epsilon(eps):
    z = anonymizers.create("dp_gaussian", epsilon=eps, delta=1e-5).noise_multiplier()
    assert composed_epsilon([z], 1e-5) == pytest.approx(eps, rel=1e-3)


def test_composition_grows_sublinearly_and_handles_edges():
    z = anonymizers.create("dp_gaussian", epsilon=1.0, delta=1e-5).noise_multiplier()
    one, four, sixteen = (composed_epsilon([z] * k, 1e-5) for k in (1, 4, 16))
    assert one < four < sixteen < 16 * one  # advanced composition: ~sqrt(k), far below k * eps
    assert four < 4 * one
    assert composed_epsilon([], 1e-5) == 0 and composed_epsilon([z, 0.0], 1e-5) == math.inf
    assert composed_epsilon([z, 2 * z], 1e-5) < composed_epsilon([z, z], 1e-5)  # more noise, less loss
    with pytest.raises(ValueError, match="delta"):
        composed_epsilon([z], 0.0)
    assert anonymizers.create("gaussian", noise_scale=1.0).noise_multiplier() is None  # no formal guarantee


def _one_shot(index, method, params, pids=(0, 1)):
    return {"index": index, "method": method, "params": params, "outcomes": dict.fromkeys(pids),
            "evaluation": {"mode": "server"}}


def test_run_composes_dp_configurations_and_leaves_out_the_rest():
    rounds = [_one_shot(0, "none", {}), _one_shot(1, "dp_gaussian", {"epsilon": 1.0}),
              _one_shot(2, "gaussian", {"noise_scale": 0.5}), _one_shot(3, "dp_gaussian", {"epsilon": 1.0}, pids=(1,))]
    dp = dp_entries(rounds, 1e-5)
    assert sorted(dp) == [1, 3]
    assert dp[1]["epsilon"] == pytest.approx(1.0, rel=1e-3) == dp[1]["epsilon_run"]
    z = dp[1]["noise_multiplier"]
    assert dp[3]["clients"]["1"]["epsilon_run"] == pytest.approx(composed_epsilon([z, z], 1e-5))
    assert dp[3]["epsilon_run"] > 1.3  # client 1 released its records twice


def test_dp_aggregate_statistics_compose_with_dp_releases():
    rounds = [_one_shot(0, "dp_gaussian", {"epsilon": 1.0}),
              {**_one_shot(1, "fed_ncm", {"epsilon": 1.0}), "evaluation": {"mode": "client"}},
              {**_one_shot(2, "fed_ridge", {"lam": 1.0}), "evaluation": {"mode": "client"}}]
    dp = dp_entries(rounds, 1e-5)
    assert sorted(dp) == [0, 1]  # fed_ridge without epsilon has no guarantee
    assert dp[1]["epsilon"] == pytest.approx(1.0, rel=1e-3)
    z = dp[0]["noise_multiplier"]
    assert dp[1]["noise_multiplier"] == pytest.approx(z)  # same epsilon, same mechanism
    assert dp[1]["epsilon_run"] == pytest.approx(composed_epsilon([z, z], 1e-5))


def test_online_queries_resent_each_round_compose_only_with_server_evaluation():
    r = {**_one_shot(0, "dp_gaussian", {"epsilon": 2.0}), "online": {"rounds": 4},
         "participation": [{"round": t, "took_part": [0] if t in (1, 3) else [0, 1]} for t in range(4)]}
    server = dp_entries([r], 1e-5)[0]["clients"]
    assert server["1"]["epsilon_per_round"][0] == pytest.approx(2.0, rel=1e-3)
    assert server["1"]["epsilon_per_round"][1] == server["1"]["epsilon_per_round"][0]  # sat round 1 out
    assert server["0"]["epsilon_per_round"] == sorted(server["0"]["epsilon_per_round"])
    assert server["0"]["epsilon"] > server["1"]["epsilon"]  # 4 rounds of queries against 2
    client = dp_entries([{**r, "evaluation": {"mode": "client"}}], 1e-5)[0]["clients"]
    assert all(e == pytest.approx(2.0, rel=1e-3) for e in client["0"]["epsilon_per_round"])  # each record once
