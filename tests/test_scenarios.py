"""Every shipped scenario file is valid, passes preflight at its own settings, and its
sweep expands as documented."""

from __future__ import annotations

import tomllib

import pytest

from fedsim.config import load_scenario
from tests.conftest import REPO

FILES = sorted((REPO / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_file_is_valid(path):
    sc = load_scenario(path)
    assert sc.anonymizer_grid()
    assert path.read_text().lstrip().startswith("#"), "each scenario says what it reproduces and how long it takes"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_file_passes_preflight(path, monkeypatch):
    """As shipped, not shrunk: the scenario runs test only tiny settings, which once hid a
    batch size that ran out of data in the last round."""
    from fedsim.preflight import preflight

    data = tomllib.loads(path.read_text()).get("data", {})
    if data.get("download"):
        pytest.skip(f"{path.name} downloads {data.get('dataset')} (no network in tests)")
    root = data.get("root")
    if root and not (REPO / root).exists():
        pytest.skip(f"{path.name} needs {REPO / root}, which is absent")
    monkeypatch.chdir(REPO)  # a relative data.root is relative to the repository, as in `make`
    preflight(load_scenario(path))


def test_sweep_grid_sizes():
    grid = load_scenario(REPO / "scenarios" / "sweep_kmeans.toml").anonymizer_grid()
    assert grid[0] == ("none", {}) and len(grid) == 1 + 3 * 2 * 2
    noise = load_scenario(REPO / "scenarios" / "sweep_noise.toml").anonymizer_grid()
    assert len(noise) == 1 + 5 + 6 + 3


def tiny_overrides(path) -> list[str]:
    """Shrink a scenario to seconds: 2 clients, 2 short online rounds, fewer attack samples, 1 GAN epoch."""
    sc = load_scenario(path)
    sets = ["federation.num_clients=2", "privacy.max_samples=100"]
    if sc.online.rounds:
        sizes = sc.online.batch_sizes()
        sets += ["online.rounds=2", f"online.batch_size={[10, 20] if len(sizes) > 1 else 20}"]
        if sc.online.domains:
            sets.append(f"online.domains={sc.online.domains[:2]!r}".replace("'", '"'))
    if "fc" in sc.classifiers:
        sets.append("classifiers.fc.epochs=2")
    if "gan" in sc.anonymizers:  # one epoch per GAN (a sweep of epoch counts becomes one run)
        sets.append("anonymizers.gan.n_epochs=1")
    if sc.federation.participation.enabled():
        sets.append("federation.participation.min_sampled=1")
    return sets


@pytest.mark.scenarios
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_file_runs(path, tmp_path):
    import json

    from fedsim.simulation import run_scenario

    scenario = load_scenario(path, tiny_overrides(path))
    run_dir = run_scenario(scenario, tmp_path / "runs")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["num_failed"] == 0
    assert len(results["releases"]) == len(scenario.anonymizer_grid()) * (
        len(scenario.online.batch_sizes()) if scenario.online.rounds else 1)
    assert (run_dir / "report.html").stat().st_size > 10_000
    if scenario.online.rounds:
        assert results["online"] and len(list(run_dir.glob("online_R-*.png"))) == len(results["online"])
