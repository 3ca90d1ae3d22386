"""Every shipped scenario file is valid, and its sweep expands as documented."""

from __future__ import annotations

import pytest

from fedsim.config import load_scenario
from tests.conftest import REPO

FILES = sorted((REPO / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_file_is_valid(path):
    sc = load_scenario(path)
    assert sc.anonymizer_grid()
    assert path.read_text().lstrip().startswith("#"), "each scenario says what it reproduces and how long it takes"


def test_sweep_grid_sizes():
    grid = load_scenario(REPO / "scenarios" / "sweep_kmeans.toml").anonymizer_grid()
    assert grid[0] == ("none", {}) and len(grid) == 1 + 3 * 2 * 2
    noise = load_scenario(REPO / "scenarios" / "sweep_noise.toml").anonymizer_grid()
    assert len(noise) == 1 + 5 + 6 + 3
