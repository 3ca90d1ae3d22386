"""Image datasets for fedsim, behind one registry and one uniform interface.

Every loader returns a :class:`LabeledImageDataset`: ``ds[i]`` gives
``(transform(PIL RGB image), int label)``, ``ds.targets`` is an int64 array of
all labels (read without decoding any image, so partitioners stay cheap) and
``ds.classes`` lists the class names. The transform can be swapped later with
``ds.transform = ...``, which lets extractors attach their own preprocessing.

Supported names (see :data:`DATASETS`):

* ``cifar10`` / ``cifar100`` - torchvision's own CIFAR classes on a local root.
* ``imagefolder`` - ``root/{train,test}/<class>/<image>`` through torchvision's ImageFolder.
* ``cifar10-mini`` - a 5,000/1,000 image class-balanced CIFAR-10 subset shipped
  inside the package (original JPEG bytes), for offline tests and quick demos.

Missing or unusable data raises :class:`DatasetError` with a one-line message
that names the path and the fix, because the typical cause is a config value.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from fedsim.assets import package_file

logger = logging.getLogger(__name__)

__all__ = ["DATASETS", "DatasetError", "LabeledImageDataset", "load_dataset", "MINI_ASSET"]

SPLITS = ("train", "test")

#: Location of the packaged CIFAR-10 subset (built by scripts/build_cifar10_mini.py).
MINI_ASSET = package_file("data/assets/cifar10-mini.npz")

Transform = Callable[[Image.Image], Any]
PathLike = str | os.PathLike


class DatasetError(ValueError):
    """The requested dataset is missing, corrupt or laid out wrongly (a configuration problem)."""

    def __init__(self, message: str = "") -> None:
        # torch's DataLoader re-raises a worker's error as DatasetError("Caught DatasetError in
        # DataLoader worker process 0. Original Traceback ... DatasetError: <message>"): keep the
        # one line that says what is wrong.
        if "Original Traceback" in message:
            message = message.rstrip().splitlines()[-1].split("DatasetError: ", 1)[-1]
        super().__init__(message)


class LabeledImageDataset(Dataset):
    """Uniform view over an image source: RGB PIL image -> transform, plus int label.

    ``source[i]`` must return ``(PIL image, anything)``; its own transform must
    be unset so the image arrives raw. Labels come from ``targets`` instead of
    the source so they are plain Python ints and readable without decoding.
    """

    def __init__(self, source: Any, targets: Any, classes: list[str], transform: Transform | None = None) -> None:
        self.source = source
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.transform = transform
        if len(self.targets) != len(source):
            raise DatasetError(f"internal: {len(source)} images but {len(self.targets)} labels")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        try:
            image, _ = self.source[index]
            if image.mode != "RGB":
                image = image.convert("RGB")
        except (OSError, ValueError, SyntaxError) as err:  # PIL: not an image, truncated, bad header
            raise DatasetError(f"cannot decode image {self.describe(index)} "
                               f"({type(err).__name__}: {' '.join(str(err).split())}); "
                               "replace or remove that file") from None
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def describe(self, index: int) -> str:
        """Where image ``index`` comes from: its file for image folders, else its index."""
        samples = getattr(self.source, "samples", None)
        return str(samples[index][0]) if samples is not None else f"#{index} of {type(self.source).__name__}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={len(self.classes)}, source={type(self.source).__name__})"


class _ArrayImages(Dataset):
    """(N, H, W, 3) uint8 array served as PIL images, exactly like torchvision's CIFAR classes do."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), int(self.labels[index])


# --------------------------------------------------------------------------- loaders


def _require_root(name: str, root: PathLike | None, fix: str) -> Path:
    """Datasets read from disk need a root; say which config key to set when it is absent."""
    if root is None or str(root) == "":
        raise DatasetError(f"{name} needs a data root but none was given: {fix}")
    return Path(root).expanduser().resolve()


def _torchvision_cifar(name: str, cls_name: str, folder: str) -> Callable[..., LabeledImageDataset]:
    """Build a loader around torchvision's CIFAR class ``cls_name`` (looked up at call time)."""

    def load(root: PathLike | None, split: str, download: bool, transform: Transform | None) -> LabeledImageDataset:
        import torchvision.datasets as tvd

        fix = f"set data.root to a folder holding {folder}, or set data.download = true"
        path = _require_root(name, root, fix)
        cls = getattr(tvd, cls_name)
        try:
            base = cls(str(path), train=(split == "train"), download=download, transform=None)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
            raise DatasetError(f"{name} not found (or corrupt) under {path}: {fix}") from exc
        except OSError as exc:  # download failed (offline, permissions, disk full)
            raise DatasetError(
                f"{name} download to {path} failed ({exc.__class__.__name__}: {exc}): "
                f"place {folder} under {path} yourself and set data.download = false"
            ) from exc
        logger.debug("loaded %s/%s from %s: %d images", name, split, path, len(base))
        return LabeledImageDataset(base, base.targets, list(base.classes), transform)

    load.__doc__ = f"Load {name} via torchvision.datasets.{cls_name}; missing files become DatasetError."
    return load


def _list_classes(folder: Path) -> list[str]:
    """Class names = sorted sub-directory names, the same rule torchvision's ImageFolder applies."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def load_imagefolder(root: PathLike | None, split: str, download: bool, transform: Transform | None) -> LabeledImageDataset:
    """Load ``root/<split>/<class>/*`` with ImageFolder; both splits must share one class list."""
    from torchvision.datasets import ImageFolder

    path = _require_root("imagefolder", root, "set data.root to a folder with train/ and test/ class subfolders")
    layout_error = f"imagefolder root {path} must contain train/ and test/ with one subfolder per class"
    if download:
        logger.warning("imagefolder cannot be downloaded; ignoring data.download = true")
    if not all((path / s).is_dir() for s in SPLITS):
        raise DatasetError(layout_error)
    train_classes, test_classes = _list_classes(path / "train"), _list_classes(path / "test")
    if not train_classes or not test_classes:
        raise DatasetError(layout_error)
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DatasetError(
            f"imagefolder {path}/train and {path}/test must have the same class subfolders; "
            f"only in train: {only_train}, only in test: {only_test}"
        )
    try:
        base = ImageFolder(str(path / split), transform=None)
    except FileNotFoundError as exc:  # a class folder without any readable image
        raise DatasetError(f"{layout_error} ({' '.join(str(exc).split())})") from exc
    return LabeledImageDataset(base, base.targets, list(base.classes), transform)


@functools.lru_cache(maxsize=None)
def _decode_mini(asset: str, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Decode one split of the mini asset once per process; the arrays are made read-only to share safely."""
    with np.load(asset, allow_pickle=False) as npz:
        blob = npz[f"{split}_jpeg"]
        offsets = npz[f"{split}_offsets"]
        labels = npz[f"{split}_labels"].astype(np.int64)
        classes = tuple(str(c) for c in npz["classes"])
    images = np.empty((len(labels), 32, 32, 3), dtype=np.uint8)
    for i in range(len(labels)):
        with Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())) as im:
            images[i] = np.asarray(im.convert("RGB"))
    images.flags.writeable = False
    labels.flags.writeable = False
    logger.debug("decoded cifar10-mini/%s: %d images", split, len(labels))
    return images, labels, classes


def load_cifar10_mini(root: PathLike | None, split: str, download: bool, transform: Transform | None) -> LabeledImageDataset:
    """Serve the packaged CIFAR-10 subset; ``root`` and ``download`` are irrelevant for it."""
    if not MINI_ASSET.is_file():
        raise DatasetError(
            f"cifar10-mini asset missing at {MINI_ASSET}: rebuild it with scripts/build_cifar10_mini.py or reinstall fedsim"
        )
    images, labels, classes = _decode_mini(str(MINI_ASSET), split)
    return LabeledImageDataset(_ArrayImages(images, labels), labels, list(classes), transform)


#: Dataset registry: name -> loader(root, split, download, transform).
DATASETS: dict[str, Callable[..., LabeledImageDataset]] = {
    "cifar10": _torchvision_cifar("cifar10", "CIFAR10", "cifar-10-batches-py"),
    "cifar100": _torchvision_cifar("cifar100", "CIFAR100", "cifar-100-python"),
    "imagefolder": load_imagefolder,
    "cifar10-mini": load_cifar10_mini,
}


def load_dataset(
    name: str,
    root: PathLike | None,
    split: str,
    download: bool = False,
    transform: Transform | None = None,
) -> LabeledImageDataset:
    """Load split ``split`` of dataset ``name``; the single entry point the rest of fedsim uses."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; allowed: {', '.join(sorted(DATASETS))}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for {name}; allowed: {', '.join(SPLITS)}")
    return DATASETS[name](root, split, bool(download), transform)
