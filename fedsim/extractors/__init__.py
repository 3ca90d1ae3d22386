"""Feature extractors by name: architecture, embedding size, preprocessing and weights.

Weights are data, not code: ``weights = "random"`` gives a seeded random initialisation
(a real random-features baseline), anything else is a checkpoint file path.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedsim.extractors.extract import extract
from fedsim.extractors.models import CompactNet
from fedsim.registry import Registry

log = logging.getLogger(__name__)

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one zoo model and feed it images."""

    build: Callable[[int], nn.Module]
    embedding_dim: int
    input_size: int = 32
    mean: tuple[float, float, float] = CIFAR_MEAN
    std: tuple[float, float, float] = CIFAR_STD


@dataclass
class Extractor:
    name: str
    model: nn.Module
    spec: ModelSpec
    weights_id: str

    @property
    def embedding_dim(self) -> int:
        return self.spec.embedding_dim

    def transform(self) -> Callable[[Any], torch.Tensor]:
        """PIL image -> normalised tensor, the preprocessing this model was trained with."""
        from torchvision import transforms as T

        steps: list[Any] = []
        if self.spec.input_size != 32:
            steps.append(T.Resize(self.spec.input_size, interpolation=T.InterpolationMode.BICUBIC))
        steps += [T.ToTensor(), T.Normalize(self.spec.mean, self.spec.std)]
        return T.Compose(steps)


REGISTRY: Registry[ModelSpec] = Registry("extractor")
REGISTRY.register("compact_cnn")(lambda: ModelSpec(build=lambda c: CompactNet(c), embedding_dim=256))


def validate(name: str, params: dict[str, Any]) -> None:
    REGISTRY.get(name)
    weights = params.get("weights", "random")
    if weights != "random" and not Path(weights).is_file():
        raise ValueError(f"weights = {weights!r}: no such file; use 'random' or a checkpoint path")


def create(name: str, weights: str = "random", num_classes: int = 10, seed: int = 0) -> Extractor:
    """Build a zoo model in eval mode with its weights."""
    validate(name, {"weights": weights})
    spec = REGISTRY.create(name)
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = spec.build(num_classes)
        weights_id = f"random-{seed}"
    else:
        model = spec.build(num_classes)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state))
        weights_id = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:16]
    return Extractor(name=name, model=model.eval(), spec=spec, weights_id=weights_id)


__all__ = ["Extractor", "ModelSpec", "REGISTRY", "create", "validate", "extract"]
