"""Image datasets for fedsim, behind one registry and one uniform interface.

Every loader returns a :class:`LabeledImageDataset`: ``ds[i]`` gives
``(transform(PIL RGB image), int label)``, ``ds.targets`` is an int64 array of
all labels, ``ds.parties`` the party of every image (None when the data has no
parties) and ``ds.classes`` lists the class names. Labels and parties are read
without decoding any image, so partitioners stay cheap; an image is read and
decoded only when ``ds[i]`` asks for it, so a client process holds its own share
of the images, never the whole split. The transform can be swapped later with
``ds.transform = ...``, which lets extractors attach their own preprocessing.

Supported names (see :data:`DATASETS`):

* ``cifar10`` / ``cifar100`` - torchvision's on-disk CIFAR format on a local root.
  torchvision checks (or downloads) the files once and the split is stored as a
  ``.npy`` array in fedsim's cache folder; every later load reads the labels and
  then single image rows from that file.
* ``imagefolder`` - ``root/{train,test}/<class>/<image>`` through torchvision's ImageFolder.
* ``imagefolder-parties`` - ``root/{train,test}/<party>/<class>/<image>``: one folder
  per party, which ``partition.method = "natural_id"`` makes the clients.
* ``cifar10-mini`` - a 5,000/1,000 image class-balanced CIFAR-10 subset shipped
  inside the package (original JPEG bytes), for offline tests and quick demos.

Missing or unusable data raises :class:`DatasetError` with a one-line message
that names the path and the fix, because the typical cause is a config value.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from fedsim import diskcache
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
    the source so they are plain Python ints and readable without decoding;
    ``parties`` (party names, one per image) likewise.
    """

    def __init__(self, source: Any, targets: Any, classes: list[str], transform: Transform | None = None,
                 parties: np.ndarray | None = None) -> None:
        self.source = source
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.transform = transform
        self.parties = None if parties is None else np.asarray(parties, dtype=str)
        if len(self.targets) != len(source) or (self.parties is not None and len(self.parties) != len(source)):
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


class _ImageRows(Dataset):
    """(N, H, W, 3) uint8 images in a ``.npy`` file, one row read per access.

    Nothing is mapped or kept: a process holds only the images it is serving, however
    large the file (torchvision's CIFAR classes hold the whole split in memory).
    """

    def __init__(self, path: Path, labels: np.ndarray) -> None:
        header = np.load(path, mmap_mode="r")  # reads the header only
        self.path, self.offset, self.shape = path, header.offset, header.shape[1:]
        self.row_bytes = int(np.prod(self.shape))
        self.labels = labels
        if header.dtype != np.uint8 or len(header) != len(labels):
            raise DatasetError(f"{path} holds {header.dtype} x {len(header)} images for {len(labels)} labels: "
                               f"delete {path.parent} to rebuild it")
        del header

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        with open(self.path, "rb") as fh:
            row = os.pread(fh.fileno(), self.row_bytes, self.offset + int(index) * self.row_bytes)
        return Image.fromarray(np.frombuffer(row, np.uint8).reshape(self.shape)), int(self.labels[index])


class _JpegBlob(Dataset):
    """JPEG files concatenated in one byte array; an image is decoded when it is asked for."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray, labels: np.ndarray) -> None:
        self.blob, self.offsets, self.labels = blob, offsets, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        raw = self.blob[self.offsets[index]:self.offsets[index + 1]].tobytes()
        with Image.open(io.BytesIO(raw)) as im:
            return im.convert("RGB"), int(self.labels[index])


class _ImageFiles(Dataset):
    """``samples`` = [(path, label)], opened when asked for (as torchvision's ImageFolder does)."""

    def __init__(self, samples: list[tuple[str, int]]) -> None:
        from torchvision.datasets.folder import default_loader

        self.samples, self.loader = samples, default_loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.samples[index]
        return self.loader(path), label


# --------------------------------------------------------------------------- loaders


def _require_root(name: str, root: PathLike | None, fix: str) -> Path:
    """Datasets read from disk need a root; say which config key to set when it is absent."""
    if root is None or str(root) == "":
        raise DatasetError(f"{name} needs a data root but none was given: {fix}")
    return Path(root).expanduser().resolve()


def _cifar_files_key(cls: Any, path: Path, split: str) -> dict[str, Any] | None:
    """What a stored split depends on: the torchvision files (name, size, mtime); None
    while one is missing (torchvision then downloads it, or says what is wrong)."""
    folder = path / cls.base_folder
    names = [f for f, _ in (cls.train_list if split == "train" else cls.test_list)] + [cls.meta["filename"]]
    files = []
    for name in names:
        try:
            st = (folder / name).stat()
        except OSError:
            return None
        files.append([name, st.st_size, st.st_mtime_ns])
    return {"dataset": cls.__name__, "root": str(path), "split": split, "files": files}


def _write_split(folder: Path, images: np.ndarray, labels: Any, classes: list[str]) -> None:
    np.save(folder / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
    np.save(folder / "labels.npy", np.asarray(labels, dtype=np.int64))
    (folder / "classes.json").write_text(json.dumps(list(classes)))


def _stored_split(folder: Path, transform: Transform | None) -> LabeledImageDataset:
    labels = np.load(folder / "labels.npy")
    classes = json.loads((folder / "classes.json").read_text())
    return LabeledImageDataset(_ImageRows(folder / "images.npy", labels), labels, classes, transform)


def _torchvision_cifar(name: str, cls_name: str, folder: str) -> Callable[..., LabeledImageDataset]:
    """Build a loader around torchvision's CIFAR class ``cls_name`` (looked up at call time).

    torchvision reads (and checks, or downloads) the pickled batches once; the split is
    then stored as an array file in the cache folder (``datasets/``), from which every
    client reads only the rows it extracts.
    """

    def load(root: PathLike | None, split: str, download: bool, transform: Transform | None) -> LabeledImageDataset:
        import torchvision.datasets as tvd

        fix = f"set data.root to a folder holding {folder}, or set data.download = true"
        path = _require_root(name, root, fix)
        cls = getattr(tvd, cls_name)
        key = _cifar_files_key(cls, path, split)
        stored = diskcache.find("datasets", key) if key else None
        if stored is not None:
            return _stored_split(stored, transform)
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
        stored = diskcache.store("datasets", key or _cifar_files_key(cls, path, split),
                                 lambda tmp: _write_split(tmp, base.data, base.targets, base.classes),
                                 f"every client process holds the whole {name} {split} split in memory")
        if stored is None:
            return LabeledImageDataset(base, base.targets, list(base.classes), transform)
        return _stored_split(stored, transform)

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


def load_imagefolder_parties(root: PathLike | None, split: str, download: bool,
                             transform: Transform | None) -> LabeledImageDataset:
    """Load ``root/<split>/<party>/<class>/*``: each image's party is its top folder.

    Class indices come from the sorted class folder names of every party in both splits,
    so they agree across parties and splits; a party need not hold every class.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    path = _require_root("imagefolder-parties", root,
                         "set data.root to a folder with train/<party>/<class>/ and test/<party>/<class>/")
    layout_error = (f"imagefolder-parties root {path} must contain train/ and test/, each with one subfolder "
                    "per party holding one subfolder per class")
    if download:
        logger.warning("imagefolder-parties cannot be downloaded; ignoring data.download = true")
    if not all((path / s).is_dir() for s in SPLITS):
        raise DatasetError(layout_error)
    classes = sorted({c for s in SPLITS for party in _list_classes(path / s) for c in _list_classes(path / s / party)})
    class_to_idx = {c: i for i, c in enumerate(classes)}
    samples: list[tuple[str, int]] = []
    parties: list[str] = []
    for party in _list_classes(path / split):
        found = make_dataset(str(path / split / party), class_to_idx, IMG_EXTENSIONS, allow_empty=True)
        samples += found
        parties += [party] * len(found)
    if not samples:
        raise DatasetError(f"{layout_error}; no images found under {path / split}")
    return LabeledImageDataset(_ImageFiles(samples), [label for _, label in samples], classes, transform,
                               parties=np.array(parties))


@functools.lru_cache(maxsize=None)
def _mini_split(asset: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """One split of the mini asset as stored (JPEG bytes, offsets, labels), read once per process."""
    with np.load(asset, allow_pickle=False) as npz:
        blob, offsets = npz[f"{split}_jpeg"], npz[f"{split}_offsets"]
        labels = npz[f"{split}_labels"].astype(np.int64)
        classes = tuple(str(c) for c in npz["classes"])
    for a in (blob, offsets, labels):
        a.flags.writeable = False  # shared by every dataset object of this process
    return blob, offsets, labels, classes


def load_cifar10_mini(root: PathLike | None, split: str, download: bool, transform: Transform | None) -> LabeledImageDataset:
    """Serve the packaged CIFAR-10 subset; ``root`` and ``download`` are irrelevant for it."""
    if not MINI_ASSET.is_file():
        raise DatasetError(
            f"cifar10-mini asset missing at {MINI_ASSET}: rebuild it with scripts/build_cifar10_mini.py or reinstall fedsim"
        )
    blob, offsets, labels, classes = _mini_split(str(MINI_ASSET), split)
    return LabeledImageDataset(_JpegBlob(blob, offsets, labels), labels, list(classes), transform)


#: Dataset registry: name -> loader(root, split, download, transform).
DATASETS: dict[str, Callable[..., LabeledImageDataset]] = {
    "cifar10": _torchvision_cifar("cifar10", "CIFAR10", "cifar-10-batches-py"),
    "cifar100": _torchvision_cifar("cifar100", "CIFAR100", "cifar-100-python"),
    "imagefolder": load_imagefolder,
    "imagefolder-parties": load_imagefolder_parties,
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
