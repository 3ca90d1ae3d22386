"""Whole-split image tensors and batched augmentation for fast small-image training.

CIFAR-sized splits fit in memory as uint8 (50,000 x 3 x 32 x 32 = 150 MB), so images are
decoded once and every epoch augments whole batches with tensor ops instead of running
PIL transforms per image: this is what makes CPU training practical.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fedsim.data import load_dataset


class _ToUint8:
    """PIL -> uint8 CHW tensor at ``size`` (resized + centre-cropped only when needed)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img):
        from torchvision.transforms import functional as F

        if img.size != (self.size, self.size):
            img = F.center_crop(F.resize(img, self.size), self.size)
        return F.pil_to_tensor(img)


def load_uint8(
    name: str, root: str | None, split: str, download: bool = False, size: int = 32, num_workers: int = 2
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images N x 3 x size x size uint8, labels int64, class names) of a whole split."""
    ds = load_dataset(name, root, split, download=download, transform=_ToUint8(size))
    loader = DataLoader(ds, batch_size=1000, num_workers=num_workers, shuffle=False)
    xs = [x for x, _ in tqdm(loader, desc=f"decode {name}/{split}", unit="batch", leave=False)]
    return torch.cat(xs), torch.from_numpy(ds.targets.copy()), list(ds.classes)


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 images -> float, scaled to [0, 1] and standardised per channel."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float().div_(255.0) - m) / s


def random_crop_flip(
    x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator, pad_mode: str = "constant"
) -> torch.Tensor:
    """Per-image random translation (pad + crop back) and horizontal flip, batched."""
    n, _, h, w = x.shape
    if padding > 0:
        padded = torch.nn.functional.pad(x.float() if pad_mode != "constant" else x, (padding,) * 4, mode=pad_mode)
        padded = padded.to(x.dtype)
        oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (oy[:, None] + torch.arange(h))[:, None, :, None]  # n,1,h,1
        cols = (ox[:, None] + torch.arange(w))[:, None, None, :]  # n,1,1,w
        batch = torch.arange(n)[:, None, None, None]
        chan = torch.arange(x.shape[1])[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def cutout(x: torch.Tensor, size: int, generator: torch.Generator, fill: int = 0) -> torch.Tensor:
    """Blank one random ``size`` x ``size`` square per image (DeVries & Taylor, 2017)."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator)[:, None, None]
    cx = torch.randint(0, w, (n,), generator=generator)[:, None, None]
    rows, cols = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
    top, left = cy - size // 2, cx - size // 2
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x.masked_fill(inside[:, None], fill)


def stratified_split(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) with ``size`` validation samples in class proportion."""
    if size <= 0:
        return np.arange(len(labels)), np.arange(0)
    rng = np.random.default_rng(seed)
    val = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / counts.sum() * size).astype(int)
    quota[: size - quota.sum()] += 1  # distribute the remainder
    for c, q in zip(classes, quota):
        idx = np.flatnonzero(labels == c)
        val.append(rng.choice(idx, size=min(q, len(idx)), replace=False))
    val_idx = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(labels)), val_idx), val_idx
