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


# --------------------------------------------------------------------------- airbench recipe


def _airbench(root, **kw):
    base = dict(dataset="imagefolder", root=str(root), epochs=2, batch_size=16, val_size=24, train_subset=64,
                num_workers=0, amp="off", lookahead_every=2, whiten_bias_epochs=1)
    return TrainConfig.from_recipe("airbench", **{**base, **kw})


def test_airbench_recipe_and_model_options():
    cfg = TrainConfig.from_recipe("airbench")
    assert (cfg.stem, cfg.dirac_init, cfg.bn_weight, cfg.flip_mode, cfg.lookahead_every) == \
        ("whiten", True, False, "alternate", 5)
    assert cfg.batch_size == 1024 and cfg.bias_lr_scale == 64 and cfg.decay_biases and cfg.tta_translate
    assert cfg.model_options() == {"stem": "whiten", "dirac": True, "bn_weight": False, "bn_eps": 1e-12,
                                   "bn_momentum": 0.4, "logit_scale": 1 / 9}
    assert TrainConfig.from_recipe("fast").model_options()["stem"] == "conv"
    with pytest.raises(ValueError, match="compact_cnn only"):
        TrainConfig.from_recipe("airbench", model="simple_convnet")
    assert TrainConfig.from_recipe("fast", model="simple_convnet").model_options() == {}
    with pytest.raises(ValueError, match="flip_mode"):
        TrainConfig.from_recipe("airbench", flip_mode="sometimes")
    # lr: warm-up 0.2 -> 1 over 23% of the steps, then linear to 0.07
    assert train_mod._lr_factor(cfg, 0, 100) == pytest.approx(0.2)
    assert train_mod._lr_factor(cfg, 23, 100) == pytest.approx(1.0)
    assert train_mod._lr_factor(cfg, 100, 100) == pytest.approx(0.07)


def test_compact_net_options_and_optimizer_groups():
    from fedsim.extractors.models import CompactNet

    net = CompactNet(stem="whiten", dirac=True, bn_weight=False)
    assert net.whiten is net.features[0] and not net.whiten.weight.requires_grad
    assert "features.0.weight" in net.state_dict() and net.state_dict()["features.0.weight"].shape == (24, 3, 2, 2)
    conv2 = net.features[6]  # second conv of the first stage: an identity map
    x = torch.randn(2, conv2.in_channels, 5, 5)
    assert torch.allclose(conv2(x), x, atol=1e-6)
    assert all(not m.weight.requires_grad for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10) and net.embed(torch.randn(2, 3, 32, 32)).shape == (2, 256)
    cfg = TrainConfig.from_recipe("airbench")
    groups = train_mod._optimizer(cfg, net).param_groups
    assert [g["lr_scale"] for g in groups] == [1.0, 64.0, 1.0]  # weights, BN shifts, whitening bias
    assert groups[1]["weight_decay"] == pytest.approx(cfg.weight_decay / 64)
    # the shipped weights (airbench recipe) rebuild their own layout from model_options;
    # the legacy 3x3-stem layout keeps its keys (files without options load as it)
    shipped = create("compact_cnn", weights="default").model
    assert shipped.stem == "whiten"
    assert set(net.state_dict()) == set(shipped.state_dict())
    assert "features.0.weight" in CompactNet().state_dict() and CompactNet().stem == "conv"


def test_whitening_stem_whitens_patches():
    from fedsim.extractors.models import CompactNet, patch_whitening

    g = torch.Generator().manual_seed(0)
    base = torch.randn(200, 3, 16, 16, generator=g)
    # correlated channels and neighbouring pixels, as in natural images
    images = base + 0.8 * base.roll(1, dims=1) + 0.6 * base.roll(1, dims=3)
    filters = patch_whitening(images, kernel_size=2, eps=1e-6)
    out = torch.nn.functional.conv2d(images, filters)  # N x 12 x 15 x 15
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = flat.T @ flat / len(flat)
    assert torch.allclose(cov, torch.eye(12), atol=1e-3)
    net = CompactNet(stem="whiten")
    net.init_whitening(images, eps=1e-6)
    assert torch.allclose(net.whiten.weight[:12], filters) and torch.allclose(net.whiten.weight[12:], -filters)
    with pytest.raises(ValueError, match="stem='whiten'"):
        CompactNet().init_whitening(images)


def test_tta_modes_and_lookahead():
    from fedsim.extractors.models import CompactNet

    net = CompactNet().eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        flip = train_mod.tta_logits(net, x, "flip")
        assert torch.allclose(flip, train_mod.tta_logits(net, x, True))
        assert torch.allclose(flip, 0.5 * (net(x) + net(x.flip(3))))
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        views = [x, padded[:, :, :32, :32], padded[:, :, 2:, 2:]]
        manual = sum(w * 0.5 * (net(v) + net(v.flip(3))) for w, v in zip((0.5, 0.25, 0.25), views))
        assert torch.allclose(train_mod.tta_logits(net, x, "multicrop"), manual, atol=1e-5)
    with pytest.raises(ValueError, match="tta must be"):
        train_mod.tta_logits(net, x, "tencrop")

    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    la = train_mod.Lookahead(model, every=2, total_steps=10)
    with torch.no_grad():
        model.weight.fill_(1.0)
    la.step(model, 1)  # not a lookahead step
    assert model.weight[0, 0] == 1.0
    la.step(model, 2)  # decay 0.95**2 * 0.2**3: EMA moves almost all the way, the model follows
    decay = 0.95 ** 2 * 0.2 ** 3
    assert model.weight[0, 0].item() == pytest.approx(1 - decay) and la.state["weight"][0, 0] == model.weight[0, 0]
    with torch.no_grad():
        model.weight.fill_(5.0)
    la.step(model, 10)  # last step: the model becomes the EMA
    assert model.weight[0, 0].item() == pytest.approx(1 - decay)


def test_airbench_resume_is_exact_with_lookahead(tiny_folder, tmp_path, monkeypatch):
    cfg = _airbench(tiny_folder, epochs=3)
    straight = train_extractor(cfg, tmp_path / "a")
    last = load_checkpoint(tmp_path / "a" / "last.pt")
    assert set(last["lookahead"]) <= set(last["model"]) and "features.0.weight" in last["lookahead"]
    assert last["model_options"]["stem"] == "whiten"
    h = straight["history"][-1]
    assert {"val_acc_flip", "val_acc_multicrop", "val_knn5", "val_knn5_flip"} <= set(h)

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


def test_airbench_export_loads_through_the_zoo(tiny_folder, tmp_path, monkeypatch):
    from fedsim import extractors
    from fedsim.extractors.checkpoint import export_weights
    from fedsim.extractors.train import predict_embeddings

    final = train_extractor(_airbench(tiny_folder, epochs=1), tmp_path / "run")
    export = tmp_path / "compact_cnn-cifar10.pt"
    export_weights(final, export, half=True)
    assert load_checkpoint(export)["model_options"]["stem"] == "whiten"
    ex = create("compact_cnn", weights=str(export))
    assert ex.model.stem == "whiten" and ex.model.logit_scale == pytest.approx(1 / 9) and ex.embedding_dim == 256
    ck = load_checkpoint(tmp_path / "run" / "final.pt")
    assert torch.equal(ex.model.whiten.weight, ck["model"]["features.0.weight"].half().float())
    trained = extractors.REGISTRY.create("compact_cnn").build(3, **ck["model_options"])
    trained.load_state_dict(ck["model"])
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    spec = ex.spec
    a = predict_embeddings(trained, images, spec.mean, spec.std, torch.device("cpu"))
    b = predict_embeddings(ex.model, images, spec.mean, spec.std, torch.device("cpu"))
    assert torch.allclose(a, b, rtol=0.02, atol=0.02)  # fp16 weights
    # train-extractor's val_knn5_flip embeds the mirror images on their own: the same vectors as
    # extractor.tta = "flip" (embed_views)
    from fedsim.extractors.extract import embed_views
    from fedsim.extractors.images import normalize

    mirrored = predict_embeddings(trained, images.flip(3), spec.mean, spec.std, torch.device("cpu"))
    with torch.inference_mode():
        views = embed_views(trained.eval(), normalize(images, spec.mean, spec.std), "flip")
    assert torch.allclose(0.5 * (a + mirrored), views, atol=1e-5)
    # the exported file as the shipped default weights
    shipped = extractors.package_file(extractors.SHIPPED["compact_cnn"])
    monkeypatch.setattr(extractors, "package_file", lambda rel: export if rel == extractors.SHIPPED["compact_cnn"]
                        else shipped)
    default = create("compact_cnn", weights="default")
    assert default.model.stem == "whiten" and default.weights_id == ex.weights_id
