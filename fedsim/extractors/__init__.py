"""Feature extractors by name: architecture, embedding size, preprocessing and weights.

Weights are data, not code.  ``weights`` is one of

* ``"default"`` -- the weights shipped inside the package (``compact_cnn``: trained on
  CIFAR-10 by ``fedsim train-extractor``, see the model card in the README);
* ``"random"`` -- a seeded random initialisation (a real random-features baseline);
* ``"pretrained"`` -- the officially released weights of an ImageNet-scale zoo model
  (``resnet18``, ``resnet50``, ``dinov2_vits14``, ``dinov2_vitb14``), taken from the local
  torch hub / Hugging Face caches only; ``create(..., download=True)`` fetches a missing file
  with torchvision's or timm's own download code;
* a file path -- a fedsim checkpoint (``{"model": state_dict, ...}``), a bare state_dict, or
  a released weights file of the model (e.g. ``dinov2_vits14_pretrain.pth``, ``.safetensors``).

Files are matched strictly against the architecture; ``Extractor.weights_id`` identifies the
weights (``random-<seed>`` or the first 16 hex digits of the file's SHA-256).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedsim.assets import package_file
from fedsim.extractors.extract import extract
from fedsim.extractors.models import CifarResNet18, CompactNet, SimpleConvNet
from fedsim.extractors.zoo import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RELEASES,
    TimmViT,
    TorchvisionResNet,
    file_digest,
    load_weights,
)
from fedsim.registry import Registry

log = logging.getLogger(__name__)

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one zoo model and feed it images.

    Preprocessing: images are resized (shorter side to ``resize`` pixels with
    ``interpolation``; ``None`` means ``input_size`` when that is not 32, else no resize),
    centre-cropped to ``input_size`` when ``crop``, then normalised with ``mean``/``std``.
    All fields but ``build`` are plain data (they key the embedding cache).
    """

    build: Callable[[int], nn.Module]
    embedding_dim: int
    input_size: int = 32
    mean: tuple[float, float, float] = CIFAR_MEAN
    std: tuple[float, float, float] = CIFAR_STD
    resize: int | None = None
    interpolation: str = "bicubic"
    crop: bool = False

    @property
    def resize_to(self) -> int | None:
        if self.resize is not None:
            return self.resize
        return self.input_size if self.input_size != 32 else None

    def describe(self) -> dict[str, Any]:
        """Embedding size and preprocessing, as plain data."""
        return {
            "embedding_dim": self.embedding_dim,
            "input_size": self.input_size,
            "resize": self.resize_to,
            "interpolation": self.interpolation if self.resize_to else None,
            "center_crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass
class Extractor:
    name: str
    model: nn.Module
    spec: ModelSpec
    weights_id: str

    @property
    def embedding_dim(self) -> int:
        return self.spec.embedding_dim

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "weights_id": self.weights_id, **describe(self.name)}

    def transform(self) -> Callable[[Any], torch.Tensor]:
        """PIL image -> normalised tensor, the preprocessing this model was trained with."""
        from torchvision import transforms as T

        steps: list[Any] = []
        if (size := self.spec.resize_to) is not None:
            steps.append(T.Resize(size, interpolation=T.InterpolationMode(self.spec.interpolation)))
        if self.spec.crop:
            steps.append(T.CenterCrop(self.spec.input_size))
        steps += [T.ToTensor(), T.Normalize(self.spec.mean, self.spec.std)]
        return T.Compose(steps)


#: Weights shipped inside the package, per model (rebuilt by `fedsim train-extractor`;
#: command, data and figures in the README's model card).
SHIPPED = {"compact_cnn": "extractors/weights/compact_cnn-cifar10.pt"}

REGISTRY: Registry[ModelSpec] = Registry("extractor")
REGISTRY.register("compact_cnn")(lambda: ModelSpec(build=lambda c, **opts: CompactNet(c, **opts), embedding_dim=256))
REGISTRY.register("simple_convnet")(lambda: ModelSpec(build=lambda c: SimpleConvNet(c), embedding_dim=768))
REGISTRY.register("resnet18_custom")(lambda: ModelSpec(build=lambda c: CifarResNet18(c), embedding_dim=768))


def _imagenet_spec(build: Callable[[int], nn.Module], dim: int, interpolation: str) -> ModelSpec:
    return ModelSpec(build=build, embedding_dim=dim, input_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     resize=224, interpolation=interpolation, crop=True)


# torchvision's ImageNet weights were trained with bilinear resizing, DINOv2 with bicubic.
REGISTRY.register("resnet18")(lambda: _imagenet_spec(lambda c: TorchvisionResNet("resnet18", c), 512, "bilinear"))
REGISTRY.register("resnet50")(lambda: _imagenet_spec(lambda c: TorchvisionResNet("resnet50", c), 2048, "bilinear"))
REGISTRY.register("dinov2_vits14")(lambda: _imagenet_spec(
    lambda c: TimmViT("vit_small_patch14_dinov2.lvd142m", c), 384, "bicubic"))
REGISTRY.register("dinov2_vitb14")(lambda: _imagenet_spec(
    lambda c: TimmViT("vit_base_patch14_dinov2.lvd142m", c), 768, "bicubic"))


def describe(name: str) -> dict[str, Any]:
    """A registered model's embedding size, preprocessing and where its weights can come from."""
    spec = REGISTRY.create(name)
    release = RELEASES.get(name)
    return {
        **spec.describe(),
        "weights": ["random", "<path to a weights file>"] + (["pretrained"] if release else []),
        "pretrained": release.source if release else None,
    }


def _pretrained_missing(name: str) -> str:
    release = RELEASES[name]
    looked = ", ".join(str(p) for p in release.searched())
    example = release.torch_hub_files[0] if release.torch_hub_files else "weights.pth"
    return (
        f"extractor {name!r}: weights = 'pretrained' but no local copy of {release.source} was found; "
        f"looked at: {looked}. "
        f"Nothing is downloaded unless asked: put the file at one of these paths, or point to a local copy "
        f"with --set extractor.weights=/path/to/{example} (a .pth state_dict or a .safetensors file), "
        f"or call fedsim.extractors.create({name!r}, weights='pretrained', download=True) once with internet."
    )


def resolve_weights(name: str, weights: str | Path = "random", download: bool = False) -> Path | None:
    """The weights file ``weights`` stands for, checked cheaply (paths only, no model, no
    network).  None for ``"random"``, and for ``"pretrained"`` still to be downloaded."""
    REGISTRY.get(name)
    weights = str(weights)
    if weights == "random":
        return None
    if weights == "default":
        if name not in SHIPPED:
            raise ValueError(
                f"extractor {name!r} has no shipped weights (shipped: {', '.join(SHIPPED)}); "
                f"use 'random', 'pretrained' or a checkpoint path"
            )
        path = package_file(SHIPPED[name])
        if not path.is_file():
            raise ValueError(f"shipped weights of {name!r} are missing at {path}; reinstall fedsim")
        return path
    if weights == "pretrained":
        release = RELEASES.get(name)
        if release is None:
            with_release = ", ".join(RELEASES)
            raise ValueError(
                f"extractor {name!r} has no released pretrained weights (those with: {with_release}); "
                f"use weights = 'random' or a checkpoint path"
            )
        path = release.find()
        if path is None and not download:
            raise ValueError(_pretrained_missing(name))
        return path
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ValueError(
            f"weights = {weights!r}: no such file; use 'random', a checkpoint path"
            + (", or 'pretrained'" if name in RELEASES else "")
        )
    return path


def validate(name: str, params: dict[str, Any]) -> None:
    """Check a model name and its weights setting without building anything."""
    resolve_weights(name, params.get("weights", "random"), bool(params.get("download", False)))


def _checkpoint_meta(path: Path | None) -> tuple[int | None, dict[str, Any]]:
    """(num_classes, model_options) recorded in a fedsim checkpoint; (None, {}) otherwise."""
    if path is None or path.suffix not in (".pt", ".pth"):
        return None, {}
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file we can peek into: load_weights reports it
        return None, {}
    if not isinstance(payload, dict):
        return None, {}
    n = payload.get("num_classes")
    options = payload.get("model_options")
    return (int(n) if isinstance(n, int) else None), (dict(options) if isinstance(options, dict) else {})


def create(
    name: str, weights: str | Path = "random", num_classes: int = 10, seed: int = 0, download: bool = False,
) -> Extractor:
    """Build a zoo model in eval mode with its weights.

    ``download=True`` lets ``weights="pretrained"`` fetch a missing release with torchvision's
    or timm's own download code; by default only local files are used.
    """
    path = resolve_weights(name, weights, download)
    spec = REGISTRY.create(name)
    # A trained fedsim checkpoint keeps its own head size: downstream only embed() is used,
    # so CIFAR-10 weights serve as an extractor for any data set.  Its model_options (e.g.
    # compact_cnn's whitening stem) rebuild the architecture it was trained with; files
    # without them (the first shipped weights, bare state_dicts) get the default one.
    ck_classes, options = _checkpoint_meta(path) if str(weights) != "random" else (None, {})
    num_classes = ck_classes or num_classes
    # Seeded even when weights are loaded: parts a released file lacks (a new classifier
    # head) are then reproducible too.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = spec.build(num_classes, **options)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: model_options {options} do not fit extractor {name!r} ({err})") from None
    if str(weights) == "random":
        weights_id = f"random-{seed}"
    else:
        if path is None:  # "pretrained", download requested
            release = RELEASES[name]
            log.info("downloading %s for extractor %r", release.source, name)
            if release.fetch is not None:
                release.fetch()
            path = release.find()
            if path is None:
                raise ValueError(_pretrained_missing(name) + "\n(the download did not leave a file there)")
        load_weights(model, path, name)
        weights_id = file_digest(path)
        log.info("extractor %r: weights %s (%s)", name, path, weights_id)
    return Extractor(name=name, model=model.eval(), spec=spec, weights_id=weights_id)


__all__ = ["Extractor", "ModelSpec", "REGISTRY", "create", "describe", "resolve_weights", "validate", "extract"]
