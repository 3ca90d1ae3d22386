"""Sampled participation: a seeded sample of clients per round, dropout and stragglers --
the schedule itself, and online and release runs on real Flower + Ray that record who took
part and compute every metric over those clients only."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fedsim.config import ParticipationConfig, ScenarioError, load_scenario
from fedsim.simulation import run_scenario
from fedsim.strategies.participation import Participation
from tests.conftest import REPO


def test_schedule_is_seeded_by_round_and_partition_only():
    cfg = ParticipationConfig(fraction=0.3, min_sampled=2, dropout=0.2, delay_s=1.0, deadline_s=2.0)
    a, b = Participation(cfg, 7, 900.0), Participation(cfg, 7, 900.0)
    pool = list(range(40))
    for r in range(5):
        pa, pb = a.plan(r, pool), b.plan(r, list(reversed(pool)))  # node order does not matter
        assert (pa.sampled, pa.dropped, pa.delays) == (pb.sampled, pb.dropped, pb.delays)
        assert len(pa.sampled) == 12 and pa.sampled == sorted(set(pa.sampled))
        assert set(pa.asked) == set(pa.sampled) - set(pa.dropped)
        assert all((pa.delays[p] > 2.0) == (p in pa.late) for p in pa.asked)
    assert a.plan(0, pool).sampled != a.plan(1, pool).sampled  # a fresh sample each round
    assert Participation(cfg, 8, 900.0).plan(0, pool).sampled != a.plan(0, pool).sampled
    # a client's dropout and delay do not depend on who else was sampled
    full = Participation(ParticipationConfig(fraction=1.0, dropout=0.2, delay_s=1.0), 7, 2.0).plan(0, pool)
    part = a.plan(0, pool)
    assert [p for p in part.sampled if p in full.dropped] == part.dropped
    assert all(full.delays[p] == part.delays[p] for p in part.asked)


def test_sample_size_follows_fraction_and_minimum():
    p = Participation(ParticipationConfig(fraction=0.1, min_sampled=3), 0, 900.0)
    assert [p.sample_size(n) for n in (1, 3, 10, 100, 1000)] == [1, 3, 3, 10, 100]
    assert Participation(ParticipationConfig(), 0, 900.0).plan(0, [3, 1, 2]).sampled == [1, 2, 3]


def test_rates_and_deadline_match_the_settings():
    cfg = ParticipationConfig(dropout=0.25, delay_s=2.0, delay_spread=0.5)
    part = Participation(cfg, 1, 900.0)
    assert part.deadline == 900.0 and Participation(ParticipationConfig(deadline_s=3.0), 1, 900.0).deadline == 3.0
    plans = [part.plan(r, list(range(200))) for r in range(20)]
    dropped = sum(len(pl.dropped) for pl in plans) / (200 * 20)
    assert dropped == pytest.approx(0.25, abs=0.02)
    delays = [d for pl in plans for d in pl.delays.values()]
    assert np.mean(delays) == pytest.approx(2.0, rel=0.1)  # the log-normal spread keeps the mean
    assert not any(pl.late for pl in plans)  # nobody is later than the 900 s round timeout


def test_bad_participation_settings_are_one_clear_error():
    with pytest.raises(ScenarioError, match="federation.participation.fraction = 0.0 must be in"):
        load_scenario(REPO / "scenarios/quickstart.toml", ["federation.participation.fraction=0.0"])
    with pytest.raises(ScenarioError, match="min_sampled = 9 is above federation.num_clients = 4"):
        load_scenario(REPO / "scenarios/quickstart.toml", ["federation.participation.min_sampled=9"])
    with pytest.raises(ScenarioError, match="dropout = 1.0 must be in"):
        load_scenario(REPO / "scenarios/quickstart.toml", ["federation.participation.dropout=1.0"])


SAMPLED = ["federation.num_clients=6", "federation.participation.fraction=0.5", "federation.participation.min_sampled=2",
           "federation.participation.dropout=0.25", "federation.participation.delay_s=1.0",
           "federation.participation.deadline_s=1.5", "privacy.metrics=false", "audit.messages=true"]


@pytest.fixture(scope="module")
def online_run(tmp_path_factory):
    scenario = load_scenario(REPO / "scenarios/online_iid.toml", [
        *SAMPLED, "online.rounds=5", "online.batch_size=20", "seed=5",
        "classifiers={knn={k=3},ncm={}}", "anonymizers={none={},gaussian={noise_scale=0.3}}"])
    run_dir = run_scenario(scenario, tmp_path_factory.mktemp("online") / "runs")
    return scenario, json.loads((run_dir / "results.json").read_text()), run_dir


def test_online_rounds_record_who_took_part(online_run):
    scenario, results, run_dir = online_run
    sched = Participation(scenario.federation.participation, scenario.seed, scenario.federation.round_timeout)
    plans = [sched.plan(r, list(range(6))) for r in range(5)]
    assert sum(len(p.dropped) for p in plans) and sum(len(p.late) for p in plans)  # the seed exercises both
    assert results["participation"]["fraction"] == 0.5 and results["participation"]["deadline_s"] == 1.5
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    assert {r["client"] for r in audit if r["phase"] == "hello"} == set(range(6))
    for release, online in zip(results["releases"], results["online"]):
        assert release["participation"] == online["participation"]  # the same clients for every configuration
        for rec, plan in zip(release["participation"], plans):
            assert rec["sampled"] == plan.sampled and rec["dropped"] == plan.dropped
            assert [x["client"] for x in rec["late"]] == plan.late and rec["failed"] == []
            assert rec["took_part"] == [p for p in plan.asked if p not in plan.late]
            asked = {r["client"] for r in audit if r["phase"] == "online" and r["index"] == release["index"]
                     and r["round"] == rec["round"] and r["direction"] == "server->client"}
            assert asked == set(plan.asked)  # dropped clients get no message; late ones are asked
        for pid, per in online["clients"].items():
            R = np.asarray(per["knn"]["R"], dtype=float)  # null: NaN
            rounds_in = [rec["round"] for rec in release["participation"] if int(pid) in rec["took_part"]]
            assert [r for r in range(5) if np.isfinite(R[r]).all()] == rounds_in  # NaN when it sat out
        for name in ("knn", "ncm"):
            R = np.asarray(online["classifiers"][name]["R"])
            assert np.isfinite(R).all() and 0.2 < online["classifiers"][name]["metrics"]["average_accuracy"] <= 1


def test_pooled_round_accuracy_counts_only_participants(online_run):
    _, results, _ = online_run
    online, release = results["online"][0], results["releases"][0]
    last = release["participation"][-1]["took_part"]
    n_query = {c["id"]: c["n_query"] for c in results["clients"]}
    R_clients = {int(p): np.asarray(v["knn"]["R"], dtype=float)[-1] for p, v in online["clients"].items() if int(p) in last}
    pooled = sum(R_clients[p] * n_query[p] for p in last) / sum(n_query[p] for p in last)
    np.testing.assert_allclose(np.asarray(online["classifiers"]["knn"]["R"])[-1], pooled)


@pytest.mark.slow  # a second Ray run; the online run keeps participation in the default suite
def test_release_with_federated_pca_uses_only_participants(tmp_path):
    scenario = load_scenario(REPO / "scenarios/quickstart.toml", [
        *SAMPLED, "seed=11", "plots.embeddings='off'", "anonymizers={pca={n_components=16}}",
        "privacy.reference=false"])
    sched = Participation(scenario.federation.participation, scenario.seed, scenario.federation.round_timeout)
    plan = sched.plan(0, list(range(6)))
    run_dir = run_scenario(scenario, tmp_path / "runs")
    results = json.loads((run_dir / "results.json").read_text())
    (release,) = results["releases"]
    (rec,) = release["participation"]
    took_part = [p for p in plan.asked if p not in plan.late]
    assert rec["took_part"] == took_part and [c["id"] for c in release["clients"]] == took_part
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    stats_asked = {r["client"] for r in audit if r["phase"] == "stats" and r["direction"] == "server->client"}
    assert stats_asked == set(plan.asked)
    assert release["accuracy_n"] == sum(c["n_query"] for c in results["clients"] if c["id"] in took_part)
    assert math.isfinite(release["accuracy"]["knn"])
    assert sorted(results["participation"]["never_took_part"]) == sorted(set(range(6)) - set(took_part))
