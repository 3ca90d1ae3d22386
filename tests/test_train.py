"""Training: recipes, clean validation split, checkpoints with hash, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fedsim.extractors.train as train_mod
from fedsim.cli import main
from fedsim.extractors import create
from fedsim.extractors.checkpoint import load_checkpoint, state_hash
from fedsim.extractors.images import random_crop_flip, stratified_split
from fedsim.extractors.train import TrainConfig, train_extractor


@pytest.fixture
def tiny_folder(tmp_path):
    """A 3-class image folder of 32x32 PNGs whose classes differ in colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for split, n in (("train", 48), ("test", 12)):
        for c, name in enumerate(["red", "green", "blue"]):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 80, size=(32, 32, 3), dtype=np.uint8)
                img[..., c] += 150
                Image.fromarray(img).save(root / split / name / f"{i}.png")
    return root


def _cfg(root, **kw):
    base = dict(dataset="imagefolder", root=str(root), epochs=2, batch_size=16, val_size=24, num_workers=0,
                amp="off")
    return TrainConfig.from_recipe("fast", **{**base, **kw})


def test_recipes_and_validation():
    study = TrainConfig.from_recipe("study")
    assert (study.optimizer, study.lr, study.weight_decay, study.grad_clip_value, study.crop_padding) == \
        ("adam", 1e-3, 1e-4, 0.5, 4)
    fast = TrainConfig.from_recipe("fast", epochs=3)
    assert fast.schedule == "onecycle" and fast.nesterov and fast.tta and fast.epochs == 3
    with pytest.raises(ValueError, match="recipe must be one of"):
        TrainConfig.from_recipe("slow")
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig.from_recipe("fast", label_smoothing=1.5)


def test_stratified_split_and_augmentation():
    y = np.repeat(np.arange(4), 25)
    tr, val = stratified_split(y, 20, seed=0)
    assert len(val) == 20 and np.bincount(y[val]).tolist() == [5, 5, 5, 5]
    assert not set(tr) & set(val) and len(tr) + len(val) == 100
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    same = random_crop_flip(x, padding=0, flip=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same, x)
    moved = random_crop_flip(x, padding=1, flip=True, generator=torch.Generator().manual_seed(1), pad_mode="reflect")
    assert moved.shape == x.shape and moved.dtype == torch.uint8


def test_train_writes_checkpoint_curves_and_learns(tiny_folder, tmp_path):
    out = tmp_path / "run"
    final = train_extractor(_cfg(tiny_folder, epochs=4), out)
    assert (out / "final.pt").is_file() and (out / "last.pt").is_file() and (out / "curves.png").is_file()
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["val_acc"] > 0.6  # colour classes are easy
    ck = load_checkpoint(out / "final.pt")
    assert ck["weights_sha256"] == state_hash(ck["model"]) == final["weights_sha256"]
    assert ck["config"]["val_size"] == 24 and ck["classes"] == ["blue", "green", "red"]
    ex = create("compact_cnn", weights=str(out / "final.pt"), num_classes=100)  # head size from the file
    assert ex.model.head.out_features == 3


def test_resume_after_interruption_gives_identical_weights(tiny_folder, tmp_path, monkeypatch):
    cfg = _cfg(tiny_folder, epochs=3)
    straight = train_extractor(cfg, tmp_path / "a")

    real_save = train_mod.save_checkpoint
    calls = {"n": 0}

    def crash_after_first_epoch(path, payload):
        real_save(path, payload)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_extractor(cfg, tmp_path / "b")
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    resumed = train_extractor(cfg, tmp_path / "b", resume=True)
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]

    with pytest.raises(ValueError, match="different config"):
        train_extractor(_cfg(tiny_folder, epochs=4), tmp_path / "b", resume=True)


def test_cli_train_and_export(tiny_folder, tmp_path, capsys):
    out, export = tmp_path / "cli", tmp_path / "w.pt"
    code = main(["train-extractor", "--recipe", "fast", "--dataset", "imagefolder", "--root", str(tiny_folder),
                 "--epochs", "1", "--batch-size", "16", "--val-size", "12", "--num-workers", "0",
                 "--amp", "off", "--out", str(out), "--export", str(export)])
    assert code == 0
    shipped = load_checkpoint(export)
    assert all(v.dtype == torch.float16 for v in shipped["model"].values() if v.is_floating_point())
    assert "exported fp16 weights" in capsys.readouterr().out
    assert main(["train-extractor", "--out", str(out), "--lr", "-1"]) == 2
