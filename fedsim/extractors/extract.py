"""Batched embedding extraction on the best device, with tqdm progress."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from fedsim.device import bf16_autocast_ok

if TYPE_CHECKING:
    from fedsim.extractors import Extractor

log = logging.getLogger(__name__)


def progress_bar(iterable, desc: str, disable: bool):
    """tqdm in a plain process; Ray's tqdm inside Ray workers, whose bars the driver
    renders in place instead of interleaving carriage-return lines from every actor."""
    import sys

    ray = sys.modules.get("ray")
    if not disable and ray is not None and ray.is_initialized():
        from ray.experimental.tqdm_ray import tqdm as ray_tqdm

        return ray_tqdm(iterable, desc=desc, unit="batch")
    return tqdm(iterable, desc=desc, unit="batch", disable=disable, leave=False)


def precision_for(device: torch.device | str, amp: str = "auto") -> str:
    """``bf16`` when autocast is used for this device and setting, else ``fp32``.

    ``auto`` uses bf16 on CUDA and on CPUs with native bf16 matrix units (AMX /
    AVX512-BF16), where it is several times faster; ``off`` forces fp32.
    """
    if amp not in ("auto", "bf16", "off"):
        raise ValueError(f"amp must be auto, bf16 or off, got {amp!r}")
    device = torch.device(device)
    use = amp == "bf16" or (amp == "auto" and bf16_autocast_ok(device))
    return "bf16" if use else "fp32"


#: Test-time augmentation of embeddings: ``none`` embeds the image alone, ``flip`` averages
#: the embeddings of the image and its mirror image (twice the compute; a flip-invariant
#: vector whose k-NN accuracy is higher -- the model card in the README gives the figures).
EMBED_TTA = ("none", "flip")


def check_tta(tta: str) -> None:
    if tta not in EMBED_TTA:
        raise ValueError(f"tta must be one of {', '.join(EMBED_TTA)}, got {tta!r}")


def embed_views(model: torch.nn.Module, images: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """float32 ``model.embed`` vectors of a normalised batch under test-time augmentation ``tta``."""
    check_tta(tta)
    emb = model.embed(images).float()
    if tta == "flip":
        emb = 0.5 * (emb + model.embed(images.flip(3)).float())
    return emb


def extract(
    extractor: "Extractor",
    dataset: Dataset,
    indices: np.ndarray | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    desc: str = "extract",
    progress: bool = True,
    amp: str = "auto",
    tta: str = "none",
) -> np.ndarray:
    """Embeddings (float32, one row per index, in index order) of ``dataset[indices]``.

    The dataset must already carry the extractor's transform.  Inference runs under
    ``torch.inference_mode`` in channels_last layout, with bf16 autocast per
    :func:`precision_for`; ``tta`` is one of :data:`EMBED_TTA` (checked before any work).
    """
    check_tta(tta)
    device = torch.device(device)
    subset = dataset if indices is None else Subset(dataset, np.asarray(indices).tolist())
    loader = DataLoader(
        subset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    model = extractor.model.to(device).eval()
    use_amp = precision_for(device, amp) == "bf16"
    model = model.to(memory_format=torch.channels_last)
    out = np.empty((len(subset), extractor.embedding_dim), dtype=np.float32)
    pos = 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
        bar = progress_bar(loader, desc=desc, disable=not progress)
        for images, _ in bar:
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            emb = embed_views(model, images, tta).cpu().numpy()
            out[pos : pos + len(emb)] = emb
            pos += len(emb)
        bar.close()
    return out
