"""Slow checks on the real CIFAR-10 JPEG copy (skipped when ../shared is absent)."""

from __future__ import annotations

import json

import pytest

from fedsim.cli import main
from tests.conftest import require_cifar10_jpg


@pytest.mark.slow
def test_shipped_weights_on_cifar10_jpg(capsys, tmp_path, monkeypatch):
    root = require_cifar10_jpg()
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["evaluate-extractor", "--weights", "default", "--dataset", "imagefolder",
                 "--root", str(root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_train"] == 50000 and result["n_test"] == 10000
    # the shipped model (README model card: 0.9203 flip TTA / 0.9200 5-NN with flip embeddings)
    assert result["test_accuracy"] >= 0.918
    assert result["knn_accuracy"] >= 0.917 and result["embedding_tta"] == "flip"
