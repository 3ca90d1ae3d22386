"""ImageNet-scale zoo models (torchvision ResNets, DINOv2 ViTs via timm) and their weights.

Released weights are looked up only in the local caches the libraries themselves use
(torch hub's ``checkpoints`` folder, the Hugging Face hub cache); nothing is downloaded
unless a caller asks for it explicitly with ``download=True``.  Looking up is plain path
arithmetic -- no torchvision/timm import, no network -- so scenario validation stays cheap
and a missing file fails at once with the list of every path looked at.

Weight files are read with ``weights_only=True`` (or safetensors) on the CPU, converted to
float32 and matched key-for-key against the model: a file made for another architecture
never loads silently.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- models


class TorchvisionResNet(nn.Module):
    """A torchvision ImageNet ResNet: the embedding is the global-average-pooled feature
    vector (what the original ``fc`` sees), the classifier a new ``Linear(d, num_classes)``.

    ``backbone`` is the torchvision model with ``fc`` removed, so its keys are exactly the
    keys of torchvision's released files (less ``fc.*``).
    """

    def __init__(self, arch: str, num_classes: int = 10) -> None:
        super().__init__()
        import torchvision

        self.backbone = getattr(torchvision.models, arch)(weights=None)
        dim = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        self.embedding_dim = dim
        self.head = nn.Linear(dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def adapt_release_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A torchvision state_dict as this model's: the ImageNet classifier becomes the
        head when its shape fits (``num_classes=1000``), else the seeded head is kept."""
        out = {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}
        fits = "fc.weight" in state and state["fc.weight"].shape == self.head.weight.shape
        for name, param in self.head.state_dict().items():
            out[f"head.{name}"] = state[f"fc.{name}"] if fits and f"fc.{name}" in state else param
        return out


class TimmViT(nn.Module):
    """A timm Vision Transformer without classifier: the embedding is timm's pooled output
    (for DINOv2, the final-norm CLS token), the classifier a ``Linear(d, num_classes)``."""

    def __init__(self, timm_name: str, num_classes: int = 10, img_size: int = 224) -> None:
        super().__init__()
        import timm

        self.backbone = timm.create_model(timm_name, pretrained=False, num_classes=0, img_size=img_size)
        self.embedding_dim = self.backbone.num_features
        self.head = nn.Linear(self.embedding_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def adapt_release_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A timm (Hugging Face) or original DINOv2 state_dict as this model's: timm's own
        filter renames original keys, drops ``mask_token`` and resamples the position
        embedding to this model's grid (518 -> 224 pixels)."""
        from timm.models.vision_transformer import checkpoint_filter_fn

        filtered = checkpoint_filter_fn(dict(state), self.backbone)
        out = {f"backbone.{k}": v for k, v in filtered.items()}
        out.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        return out


# --------------------------------------------------------------------------- released weights


def torch_hub_checkpoints() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps files (honours ``set_dir``,
    ``TORCH_HOME`` and ``XDG_CACHE_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, resolved as huggingface_hub does (without importing it)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        home = Path(os.environ["HF_HOME"]).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        home = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface"
    return home / "hub"


@dataclass(frozen=True)
class Release:
    """Officially released weights of one zoo model and where their local copies live.

    ``hf_repo`` files are searched first (``models--org--name/snapshots/*/<file>``, the
    snapshot named by ``refs/main`` preferred), then ``torch_hub_files`` in torch hub's
    checkpoints folder, each in the order given.
    """

    source: str  # human description, e.g. "torchvision ResNet18_Weights.IMAGENET1K_V1"
    torch_hub_files: tuple[str, ...] = ()
    hf_repo: str | None = None
    hf_files: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    fetch: Callable[[], None] | None = None  # download with the library's own code

    def _hf_dir(self) -> Path | None:
        return hf_hub_cache() / ("models--" + self.hf_repo.replace("/", "--")) if self.hf_repo else None

    def searched(self) -> list[str]:
        """Every location looked at (snapshot folders as a glob)."""
        paths = []
        if (repo := self._hf_dir()) is not None:
            paths += [str(repo / "snapshots" / "*" / f) for f in self.hf_files]
        paths += [str(torch_hub_checkpoints() / f) for f in self.torch_hub_files]
        return paths

    def find(self) -> Path | None:
        """The first local copy, or None.  Only stats a handful of paths."""
        if (repo := self._hf_dir()) is not None and (repo / "snapshots").is_dir():
            snapshots = sorted(p for p in (repo / "snapshots").iterdir() if p.is_dir())
            ref = repo / "refs" / "main"
            if ref.is_file():
                main = repo / "snapshots" / ref.read_text().strip()
                snapshots = [main] + [s for s in snapshots if s != main]
            for name in self.hf_files:
                for snap in snapshots:
                    if (snap / name).is_file():
                        return snap / name
        for name in self.torch_hub_files:
            if (path := torch_hub_checkpoints() / name).is_file():
                return path
        return None


def _torchvision_fetch(enum_name: str) -> Callable[[], None]:
    def fetch() -> None:
        import torchvision.models

        # Downloads into torch hub's checkpoints folder, where ``Release.find`` looks.
        getattr(torchvision.models, enum_name).DEFAULT.get_state_dict(progress=True)

    return fetch


def _timm_fetch(timm_name: str) -> Callable[[], None]:
    def fetch() -> None:
        import timm

        # Downloads into the Hugging Face cache (or torch hub for URL-only weights).
        timm.create_model(timm_name, pretrained=True, num_classes=0, img_size=224)

    return fetch


#: Released weights by registry name.  File names are those of the libraries' own download
#: URLs (the torchvision weights enums, timm's pretrained configs); tests cross-check them.
RELEASES: dict[str, Release] = {
    "resnet18": Release(
        source="torchvision ResNet18_Weights.IMAGENET1K_V1 (ImageNet-1k)",
        torch_hub_files=("resnet18-f37072fd.pth",),
        fetch=_torchvision_fetch("ResNet18_Weights"),
    ),
    "resnet50": Release(
        source="torchvision ResNet50_Weights.IMAGENET1K_V2 (ImageNet-1k; V1 file accepted too)",
        torch_hub_files=("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
        fetch=_torchvision_fetch("ResNet50_Weights"),
    ),
    "dinov2_vits14": Release(
        source="DINOv2 ViT-S/14 LVD-142M (timm vit_small_patch14_dinov2.lvd142m)",
        hf_repo="timm/vit_small_patch14_dinov2.lvd142m",
        torch_hub_files=("dinov2_vits14_pretrain.pth",),
        fetch=_timm_fetch("vit_small_patch14_dinov2.lvd142m"),
    ),
    "dinov2_vitb14": Release(
        source="DINOv2 ViT-B/14 LVD-142M (timm vit_base_patch14_dinov2.lvd142m)",
        hf_repo="timm/vit_base_patch14_dinov2.lvd142m",
        torch_hub_files=("dinov2_vitb14_pretrain.pth",),
        fetch=_timm_fetch("vit_base_patch14_dinov2.lvd142m"),
    ),
}


# --------------------------------------------------------------------------- weight files


def file_digest(path: str | Path) -> str:
    """First 16 hex digits of the file's SHA-256: the ``weights_id`` of a weights file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The float32 state_dict in a weights file: a fedsim checkpoint (``"model"``), a bare
    state_dict, a ``"state_dict"`` wrapper, or a ``.safetensors`` file."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise ValueError(f"{path}: reading .safetensors files needs the safetensors package") from None
            payload: Any = load_file(str(path), device="cpu")
        else:
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except ValueError:
        raise
    except Exception as err:  # unpickling refused, truncated file, not a torch file ...
        raise ValueError(_unreadable(path, err)) from None
    if isinstance(payload, dict):
        for key in ("model", "state_dict"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not payload or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()
    ):
        raise ValueError(f"{path}: not a state_dict (expected a mapping of parameter names to tensors)")
    return {k: v.float() if v.is_floating_point() else v for k, v in payload.items()}


def _unreadable(path: Path, err: Exception) -> str:
    """One line saying why a weights file could not be read (torch's own texts run to a
    paragraph): not a checkpoint at all, a damaged one, or one holding more than tensors."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as os_err:
        return f"{path}: cannot read weights ({os_err.strerror})"
    if path.suffix != ".safetensors" and not head.startswith((b"PK\x03\x04", b"\x80")):
        return (f"{path}: not a torch checkpoint (neither torch.save's zip format nor a pickle); "
                "expected a .pt/.pth state_dict or a .safetensors file")
    text = " ".join(str(err).split())
    if text.startswith("Weights only load failed"):
        return (f"{path}: holds Python objects besides tensors (a pickled model?), which fedsim does not "
                "unpickle; save model.state_dict() instead")
    first = text.split(". ")[0][:200]
    return f"{path}: cannot read weights, the file is damaged or truncated ({type(err).__name__}: {first})"


def _short(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_weights(model: nn.Module, path: str | Path, name: str) -> None:
    """Load ``path`` into ``model`` strictly; a mismatch is a ValueError naming the file."""
    state = read_state(path)
    own = model.state_dict()
    own_format = any(k.startswith(("backbone.", "head.")) for k in state)
    if set(state) != set(own) and hasattr(model, "adapt_release_state") and not own_format:
        try:
            state = model.adapt_release_state(state)
        except Exception as err:
            raise ValueError(f"{path}: weights do not fit extractor {name!r} ({err})") from None
    missing = [k for k in own if k not in state]
    # BatchNorm counters absent from old releases are not weights: keep the model's own.
    for k in [k for k in missing if k.endswith("num_batches_tracked")]:
        state[k] = own[k]
        missing.remove(k)
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"missing keys: {_short(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_short(unexpected)}")
        if wrong_shape:
            problems.append(f"shape mismatches (file vs model): {_short(wrong_shape, 3)}")
        raise ValueError(
            f"{path}: weights do not fit extractor {name!r} (wrong architecture or num_classes?); "
            + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)
