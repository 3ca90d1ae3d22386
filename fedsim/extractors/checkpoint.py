"""Checkpoints: weights + the config that produced them + a content hash.

Always loaded with ``map_location="cpu"`` (the original study crashed loading CUDA
checkpoints on CPU machines) and ``weights_only=True`` (no pickled code runs on load).
Writes are atomic so an interrupted save never corrupts the previous checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over parameter names, dtypes, shapes and bytes: identifies the weights."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomic torch.save (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict):
        raise ValueError(f"{path} is not a fedsim checkpoint (expected a dict)")
    return payload


def model_state(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The float32 model weights of a checkpoint (a bare state_dict is accepted too)."""
    state = payload.get("model", payload)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def export_weights(payload: dict[str, Any], path: str | Path, half: bool = True) -> str:
    """Write a compact, shippable weights file (fp16 by default); returns its weights hash."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model_state(payload).items()}
    digest = state_hash(state)
    save_checkpoint(path, {
        "model": state,
        "arch": payload.get("arch"),
        "num_classes": payload.get("num_classes"),
        "model_options": payload.get("model_options", {}),
        "config": payload.get("config", {}),
        "metrics": payload.get("metrics", {}),
        "weights_sha256": digest,
    })
    return digest
