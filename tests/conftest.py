"""Shared fixtures: paths, and a scenario writer for small real runs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CIFAR10_JPG = SHARED / "datasets" / "cifar10-jpg"

os.environ.setdefault("RAY_ADDRESS", "local")
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never read or fill the user's embedding cache.
os.environ["FEDSIM_CACHE_DIR"] = tempfile.mkdtemp(prefix="fedsim-test-cache-")


@pytest.fixture
def write_scenario(tmp_path):
    """Write a scenario TOML into tmp_path and return its path."""

    def write(text: str, name: str = "scenario.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def require_cifar10_jpg() -> Path:
    if not CIFAR10_JPG.is_dir():
        pytest.skip(f"real CIFAR-10 JPEG copy not found at {CIFAR10_JPG}")
    return CIFAR10_JPG


@pytest.fixture(scope="module")
def one_torch_thread():
    """Attack tests time nothing, but results must not depend on the thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
