#!/usr/bin/env python
"""Build fedsim/data/assets/cifar10-mini.npz from a CIFAR-10 JPEG copy.

The asset lets tests and demos run offline with real CIFAR-10 images. To stay
small it keeps the ORIGINAL JPEG bytes of a class-balanced sample (no
re-encoding, so decoding gives exactly what the source files give). Per split
it stores one uint8 buffer of concatenated files, int64 offsets (N+1) and
int64 labels, plus class names, the relative source file names and the
provenance (source path, seed, per-class counts).

Sampling is deterministic: file names are sorted per class, a single
``np.random.default_rng(seed)`` draws the train sample for every class, then
the test sample, then shuffles each split's order.

Usage::

    python scripts/build_cifar10_mini.py [--source DIR] [--out PATH]
        [--train-per-class 500] [--test-per-class 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "datasets" / "cifar10-jpg"
DEFAULT_OUT = REPO / "fedsim" / "data" / "assets" / "cifar10-mini.npz"
IMAGE_SUFFIXES = {".jpg", ".jpeg"}


def sample_split(source: Path, split: str, classes: list[str], per_class: int, rng: np.random.Generator):
    """Pick ``per_class`` files per class and return (jpeg buffer, offsets, labels, relative names)."""
    names: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = sorted(p.name for p in (source / split / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) < per_class:
            sys.exit(f"error: {source / split / cls} has {len(files)} images, need {per_class}")
        chosen = np.sort(rng.choice(len(files), size=per_class, replace=False))
        names += [f"{split}/{cls}/{files[i]}" for i in chosen]
        labels += [label] * per_class
    order = rng.permutation(len(names))  # mixed class order, like the real CIFAR batches
    names = [names[i] for i in order]
    labels_arr = np.asarray(labels, dtype=np.int64)[order]

    blobs = []
    for name in names:
        data = (source / name).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (32, 32):
                sys.exit(f"error: {source / name} is {im.size}, expected 32x32")
            im.convert("RGB").load()  # fail here, not at load time, on a broken file
        blobs.append(data)
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    return buffer, offsets, labels_arr, np.asarray(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with train/ and test/ class folders of JPEGs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npz path")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    source = args.source.expanduser().resolve()
    if not all((source / s).is_dir() for s in ("train", "test")):
        parser.error(f"{source} must contain train/ and test/ class folders")
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    test_classes = sorted(p.name for p in (source / "test").iterdir() if p.is_dir())
    if classes != test_classes:
        parser.error(f"train/ and test/ under {source} have different class folders")

    rng = np.random.default_rng(args.seed)
    arrays: dict[str, np.ndarray] = {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        buffer, offsets, labels, names = sample_split(source, split, classes, per_class, rng)
        arrays.update({
            f"{split}_jpeg": buffer,
            f"{split}_offsets": offsets,
            f"{split}_labels": labels,
            f"{split}_files": names,
            f"{split}_per_class": np.bincount(labels, minlength=len(classes)).astype(np.int64),
        })
    arrays.update({
        "classes": np.asarray(classes),
        "source": np.asarray(str(source)),
        "seed": np.asarray(args.seed, dtype=np.int64),
    })

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Plain savez: JPEG bytes do not compress, and a fixed layout keeps rebuilds byte-identical.
    with open(args.out, "wb") as fh:
        np.savez(fh, **arrays)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.2f} MB, {size} bytes): "
          f"{len(arrays['train_labels'])} train + {len(arrays['test_labels'])} test images, {len(classes)} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
