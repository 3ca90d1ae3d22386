"""The extractor zoo: architectures, preprocessing and weights resolution.

Everything runs on tiny inputs with random weights; no released weights and no network
are needed (fake "released" files are written into temporary caches).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from fedsim import extractors
from fedsim.extractors import zoo

SMALL = ["compact_cnn", "simple_convnet", "resnet18_custom"]
EXPECTED = {
    "compact_cnn": (256, 32),
    "simple_convnet": (768, 32),
    "resnet18_custom": (768, 32),
    "resnet18": (512, 224),
    "resnet50": (2048, 224),
    "dinov2_vits14": (384, 224),
    "dinov2_vitb14": (768, 224),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Keep CPU use low (other jobs share the machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches; returns (hub checkpoints dir, HF hub dir)."""
    torch_home = tmp_path / "torch"
    hf_home = tmp_path / "hf"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # restored after the test
    torch.hub.set_dir(str(torch_home / "hub"))
    return torch_home / "hub" / "checkpoints", hf_home / "hub"


@pytest.fixture
def no_download(monkeypatch):
    """Any download attempt fails the test."""

    def boom(*args, **kwargs):
        raise AssertionError("download attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", boom)
    for name, release in list(zoo.RELEASES.items()):
        monkeypatch.setitem(zoo.RELEASES, name, dataclasses.replace(release, fetch=boom))


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- architectures


def test_registry_names_and_descriptions():
    assert set(EXPECTED) <= set(extractors.REGISTRY)
    for name, (dim, size) in EXPECTED.items():
        info = extractors.describe(name)
        assert (info["embedding_dim"], info["input_size"]) == (dim, size)
        assert ("pretrained" in info["weights"]) == (name in zoo.RELEASES)
    assert extractors.describe("dinov2_vits14")["interpolation"] == "bicubic"
    assert extractors.describe("resnet18")["mean"] == list(zoo.IMAGENET_MEAN)
    assert extractors.describe("simple_convnet")["resize"] is None


@pytest.mark.parametrize("name", list(EXPECTED))
def test_builds_and_shapes(name):
    dim, size = EXPECTED[name]
    ex = extractors.create(name, num_classes=7, seed=0)
    assert ex.embedding_dim == dim and ex.weights_id == "random-0"
    assert not ex.model.training
    n = 2 if size == 32 else 1
    x = torch.randn(n, 3, size, size)
    with torch.no_grad():
        assert ex.model.embed(x).shape == (n, dim)
        assert ex.model(x).shape == (n, 7)


def test_study_parameter_counts():
    assert n_params(extractors.create("simple_convnet", num_classes=10).model) == 950_058
    assert n_params(extractors.create("resnet18_custom", num_classes=10).model) == 11_570_506


def test_simple_convnet_embedding_is_post_relu():
    model = extractors.create("simple_convnet", seed=1).model
    with torch.no_grad():
        assert (model.embed(torch.randn(4, 3, 32, 32)) >= 0).all()


@pytest.mark.parametrize("name", ["simple_convnet", "resnet18_custom", "resnet18"])
def test_random_init_is_seeded(name):
    a = extractors.create(name, seed=1).model.state_dict()
    b = extractors.create(name, seed=1).model.state_dict()
    c = extractors.create(name, seed=2).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# --------------------------------------------------------------------------- preprocessing


def test_transform_shapes():
    small = Image.new("RGB", (32, 32), (120, 30, 200))
    wide = Image.new("RGB", (48, 32), (10, 200, 60))
    for name, size in (("dinov2_vits14", 224), ("resnet18", 224), ("simple_convnet", 32)):
        spec = extractors.REGISTRY.create(name)
        tf = extractors.Extractor(name=name, model=torch.nn.Identity(), spec=spec, weights_id="x").transform()
        assert tf(small).shape == (3, size, size)
        if size == 224:
            assert tf(wide).shape == (3, 224, 224)  # resize shorter side, then centre crop


# --------------------------------------------------------------------------- weights files


def test_state_dict_round_trip_and_wrong_architecture(tmp_path):
    ex = extractors.create("resnet18_custom", seed=3)
    bare = tmp_path / "bare.pt"
    torch.save(ex.model.state_dict(), bare)
    half = tmp_path / "ckpt_fp16.pt"
    torch.save({"model": {k: v.half() if v.is_floating_point() else v for k, v in ex.model.state_dict().items()},
                "arch": "resnet18_custom"}, half)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = ex.model.embed(x)
        again = extractors.create("resnet18_custom", weights=str(bare), seed=9)
        assert torch.allclose(want, again.model.embed(x))
        from_half = extractors.create("resnet18_custom", weights=str(half))
        assert all(p.dtype == torch.float32 for p in from_half.model.parameters())
        assert torch.allclose(want, from_half.model.embed(x), atol=0.05, rtol=0.05)
    assert again.weights_id == hashlib.sha256(bare.read_bytes()).hexdigest()[:16]
    with pytest.raises(ValueError, match="do not fit extractor 'simple_convnet'") as err:
        extractors.create("simple_convnet", weights=str(bare))
    assert str(bare) in str(err.value)
    with pytest.raises(ValueError, match="shape mismatches"):
        extractors.create("resnet18_custom", weights=str(bare), num_classes=5)


def test_unreadable_file_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a torch checkpoint") as err:
        extractors.create("simple_convnet", weights=str(junk))
    assert str(junk) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_fails_fast():
    with pytest.raises(ValueError, match="no such file"):
        extractors.validate("resnet18", {"weights": "/nope/w.pth"})


# --------------------------------------------------------------------------- "pretrained"


@pytest.mark.parametrize("name", list(zoo.RELEASES))
def test_pretrained_missing_fails_fast_with_paths(name, caches, no_download):
    hub, hf = caches
    for call in (lambda: extractors.validate(name, {"weights": "pretrained"}),
                 lambda: extractors.create(name, weights="pretrained")):
        start = time.perf_counter()
        with pytest.raises(ValueError) as err:
            call()
        assert time.perf_counter() - start < 1.0
        msg = str(err.value)
        for path in zoo.RELEASES[name].searched():
            assert path in msg
        assert str(hub) in msg and "--set extractor.weights=" in msg
        if zoo.RELEASES[name].hf_repo:
            assert str(hf) in msg


def test_pretrained_without_release():
    with pytest.raises(ValueError, match="no released pretrained weights"):
        extractors.validate("simple_convnet", {"weights": "pretrained"})


def test_download_option_uses_library_fetch(caches, monkeypatch):
    hub, _ = caches
    calls = []

    def fake_fetch():  # stands in for torchvision's own download
        calls.append(1)
        hub.mkdir(parents=True, exist_ok=True)
        import torchvision

        torch.save(torchvision.models.resnet18(weights=None).state_dict(), hub / "resnet18-f37072fd.pth")

    monkeypatch.setitem(zoo.RELEASES, "resnet18", dataclasses.replace(zoo.RELEASES["resnet18"], fetch=fake_fetch))
    extractors.validate("resnet18", {"weights": "pretrained", "download": True})  # no error, no fetch yet
    assert not calls
    ex = extractors.create("resnet18", weights="pretrained", download=True)
    assert calls == [1] and len(ex.weights_id) == 16


def test_torchvision_release_found_in_hub_cache(caches, no_download):
    import torchvision

    hub, _ = caches
    hub.mkdir(parents=True)
    torch.manual_seed(4)
    released = torchvision.models.resnet18(weights=None).state_dict()  # ImageNet-style: fc 1000 classes
    released = {k: v for k, v in released.items() if not k.endswith("num_batches_tracked")}  # as old releases
    path = hub / "resnet18-f37072fd.pth"
    torch.save(released, path)
    ex = extractors.create("resnet18", weights="pretrained", num_classes=10)
    state = ex.model.state_dict()
    assert torch.equal(state["backbone.conv1.weight"], released["conv1.weight"])
    assert state["head.weight"].shape == (10, 512)
    assert ex.weights_id == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    full = extractors.create("resnet18", weights="pretrained", num_classes=1000)
    assert torch.equal(full.model.head.weight, released["fc.weight"])  # ImageNet head kept
    # a resnet50 file named like resnet18's must not load
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit extractor 'resnet18'") as err:
        extractors.create("resnet18", weights="pretrained")
    assert str(path) in str(err.value)


def test_timm_release_found_in_hf_cache(caches, no_download):
    from safetensors.torch import save_file

    _, hf = caches
    ref = extractors.create("dinov2_vits14", seed=5)
    snap = hf / "models--timm--vit_small_patch14_dinov2.lvd142m" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    path = snap / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.model.backbone.state_dict().items()}, str(path))
    ex = extractors.create("dinov2_vits14", weights="pretrained", seed=6)
    assert ex.weights_id == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ref.model.embed(x), ex.model.embed(x), atol=1e-5)


def test_original_dinov2_file_in_torch_hub(caches, no_download):
    """The fbaipublicfiles release: original keys, mask_token, a 518-pixel position grid."""
    hub, _ = caches
    hub.mkdir(parents=True)
    ref = extractors.create("dinov2_vits14", seed=7).model.backbone.state_dict()
    original = dict(ref, mask_token=torch.zeros(1, 384), pos_embed=torch.randn(1, 1 + 37 * 37, 384))
    torch.save({k: v.half() for k, v in original.items()}, hub / "dinov2_vits14_pretrain.pth")
    ex = extractors.create("dinov2_vits14", weights="pretrained")
    state = ex.model.backbone.state_dict()
    assert state["pos_embed"].shape == (1, 1 + 16 * 16, 384) and state["pos_embed"].dtype == torch.float32
    assert torch.allclose(state["blocks.0.attn.qkv.weight"], ref["blocks.0.attn.qkv.weight"], atol=1e-3)


def test_release_file_names_match_the_libraries():
    import torchvision.models as tvm
    from timm.models import get_pretrained_cfg

    assert zoo.RELEASES["resnet18"].torch_hub_files == (Path(tvm.ResNet18_Weights.IMAGENET1K_V1.url).name,)
    assert zoo.RELEASES["resnet50"].torch_hub_files == (
        Path(tvm.ResNet50_Weights.DEFAULT.url).name, Path(tvm.ResNet50_Weights.IMAGENET1K_V1.url).name)
    for name, timm_name in (("dinov2_vits14", "vit_small_patch14_dinov2.lvd142m"),
                            ("dinov2_vitb14", "vit_base_patch14_dinov2.lvd142m")):
        cfg = get_pretrained_cfg(timm_name)
        assert zoo.RELEASES[name].hf_repo == cfg.hf_hub_id
        assert zoo.RELEASES[name].torch_hub_files == (Path(cfg.url).name,)
