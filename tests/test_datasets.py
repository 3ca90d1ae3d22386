"""Tests for fedsim.data.datasets: loaders, registry and the packaged cifar10-mini asset.

The CIFAR tests write tiny files in torchvision's real on-disk format and load
them through the real torchvision classes; only the expected md5 sums are
patched (to those of the files written here) so the integrity check still runs.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedsim.data import DATASETS, DatasetError, load_dataset
from fedsim.data.datasets import MINI_ASSET

SHARED_CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpg"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _dump(path: Path, obj: dict) -> str:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)
    return _md5(path)


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """CIFAR stores each image as one row: 1024 R, then 1024 G, then 1024 B values."""
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _hwc(rows: np.ndarray) -> np.ndarray:
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


@pytest.fixture
def tiny_cifar10(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    names = [f"class{i}" for i in range(10)]
    train_list, train_rows, train_labels = [], [], []
    for b in range(1, 6):
        rows, labels = _rows(rng, 4), rng.integers(0, 10, size=4).tolist()
        train_list.append([f"data_batch_{b}", _dump(folder / f"data_batch_{b}", {"data": rows, "labels": labels})])
        train_rows.append(rows)
        train_labels += labels
    test_rows, test_labels = _rows(rng, 6), rng.integers(0, 10, size=6).tolist()
    test_md5 = _dump(folder / "test_batch", {"data": test_rows, "labels": test_labels})
    meta_md5 = _dump(folder / "batches.meta", {"label_names": names})
    monkeypatch.setattr(tvd.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", test_md5]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": meta_md5})
    return {
        "root": tmp_path,
        "classes": names,
        "train": (np.concatenate(train_rows), np.array(train_labels)),
        "test": (test_rows, np.array(test_labels)),
    }


@pytest.fixture
def tiny_cifar100(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(2)
    names = [f"fine{i:02d}" for i in range(100)]
    data = {}
    for split, n in (("train", 12), ("test", 5)):
        rows, labels = _rows(rng, n), rng.integers(0, 100, size=n).tolist()
        md5 = _dump(folder / split, {"data": rows, "fine_labels": labels, "coarse_labels": [0] * n})
        data[split] = (rows, np.array(labels), md5)
    meta_md5 = _dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": ["c"]})
    monkeypatch.setattr(tvd.CIFAR100, "train_list", [["train", data["train"][2]]])
    monkeypatch.setattr(tvd.CIFAR100, "test_list", [["test", data["test"][2]]])
    monkeypatch.setattr(tvd.CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": meta_md5})
    return {"root": tmp_path, "classes": names, **{s: data[s][:2] for s in ("train", "test")}}


def _check_split(ds, rows, labels, classes):
    assert len(ds) == len(labels)
    assert ds.classes == classes
    assert isinstance(ds.targets, np.ndarray) and ds.targets.dtype == np.int64
    np.testing.assert_array_equal(ds.targets, labels)
    expected = _hwc(rows)
    for i in (0, len(ds) - 1):
        img, label = ds[i]
        assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)
        assert type(label) is int and label == labels[i]
        np.testing.assert_array_equal(np.asarray(img), expected[i])  # pixel round-trip


def test_registry_names():
    assert set(DATASETS) == {"cifar10", "cifar100", "imagefolder", "imagefolder-parties", "cifar10-mini"}


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_tiny_files(tiny_cifar10, split):
    ds = load_dataset("cifar10", str(tiny_cifar10["root"]), split)
    _check_split(ds, *tiny_cifar10[split], tiny_cifar10["classes"])


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar100_tiny_files(tiny_cifar100, split):
    ds = load_dataset("cifar100", tiny_cifar100["root"], split)
    _check_split(ds, *tiny_cifar100[split], tiny_cifar100["classes"])


def test_cifar_split_is_stored_once_and_read_row_by_row(tiny_cifar10, monkeypatch, tmp_path):
    """torchvision reads the pickled batches once; later loads read labels and single rows
    from the stored array, without torchvision and without holding the split."""
    import torchvision.datasets as tvd

    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path / "cache"))
    first = load_dataset("cifar10", tiny_cifar10["root"], "train")
    assert type(first.source).__name__ == "_ImageRows"
    monkeypatch.setattr(tvd.CIFAR10, "__init__", lambda *a, **k: pytest.fail("torchvision read the batches again"))
    again = load_dataset("cifar10", tiny_cifar10["root"], "train")
    _check_split(again, *tiny_cifar10["train"], tiny_cifar10["classes"])
    assert not hasattr(again.source, "data")  # no array of the split in the process
    (tiny_cifar10["root"] / "cifar-10-batches-py" / "data_batch_1").touch()  # changed files: read again
    with pytest.raises(BaseException, match="torchvision read the batches again"):
        load_dataset("cifar10", tiny_cifar10["root"], "train")


def test_cifar_with_an_unwritable_cache_holds_the_split_in_memory(tiny_cifar10, monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(blocker))
    with caplog.at_level("WARNING", logger="fedsim"):
        ds = load_dataset("cifar10", tiny_cifar10["root"], "test")
    _check_split(ds, *tiny_cifar10["test"], tiny_cifar10["classes"])
    assert any("whole cifar10 test split in memory" in r.getMessage() for r in caplog.records)


def test_transform_argument_and_reassignment(tiny_cifar10):
    ds = load_dataset("cifar10", tiny_cifar10["root"], "test", transform=lambda im: np.asarray(im).shape)
    assert ds[0][0] == (32, 32, 3)
    ds.transform = lambda im: im.size
    assert ds[0][0] == (32, 32)
    ds.transform = None
    assert isinstance(ds[0][0], Image.Image)


def test_cifar_corrupt_file_is_dataset_error(tiny_cifar10):
    (tiny_cifar10["root"] / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="download"):
        load_dataset("cifar10", tiny_cifar10["root"], "test")


@pytest.mark.parametrize(("name", "folder"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_root_message(tmp_path, name, folder):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        load_dataset(name, str(root), "train")
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in msg
    assert str(root) in msg and "download" in msg and folder in msg


def test_root_none_and_bad_names():
    with pytest.raises(DatasetError, match="root"):
        load_dataset("cifar10", None, "train")
    with pytest.raises(DatasetError, match="cifar10-mini"):
        load_dataset("mnist", None, "train")
    with pytest.raises(DatasetError, match="split"):
        load_dataset("cifar10-mini", None, "val")


def _png_tree(root: Path, layout: dict[str, dict[str, int]]) -> None:
    rng = np.random.default_rng(3)
    for split, classes in layout.items():
        for cls, n in classes.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                mode = "L" if i % 2 else "RGB"  # grayscale files must come back as RGB
                shape = (8, 8) if mode == "L" else (8, 8, 3)
                Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(root / split / cls / f"{i}.png")


def test_imagefolder(tmp_path):
    _png_tree(tmp_path, {"train": {"dog": 3, "cat": 2}, "test": {"cat": 1, "dog": 2}})
    train = load_dataset("imagefolder", tmp_path, "train")
    test = load_dataset("imagefolder", str(tmp_path), "test", transform=lambda im: im.mode)
    assert train.classes == test.classes == ["cat", "dog"] and train.parties is None
    np.testing.assert_array_equal(train.targets, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(test.targets, [0, 1, 1])
    assert train.targets.dtype == np.int64
    for i in range(len(train)):
        img, label = train[i]
        assert img.mode == "RGB" and img.size == (8, 8) and type(label) is int
    assert [test[i][0] for i in range(len(test))] == ["RGB"] * 3


def test_imagefolder_mismatched_classes(tmp_path):
    _png_tree(tmp_path, {"train": {"cat": 1, "dog": 1}, "test": {"cat": 1, "fox": 1}})
    with pytest.raises(DatasetError) as info:
        load_dataset("imagefolder", tmp_path, "train")
    msg = str(info.value)
    assert "train" in msg and "test" in msg and "dog" in msg and "fox" in msg


def test_imagefolder_missing_split(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError) as info:
        load_dataset("imagefolder", tmp_path, "train")
    assert str(info.value) == f"imagefolder root {tmp_path.resolve()} must contain train/ and test/ with one subfolder per class"


def test_imagefolder_parties(tmp_path):
    root = tmp_path / "data"
    _png_tree(root / "train" / "party1", {"": {"cat": 2, "dog": 1}})
    _png_tree(root / "train" / "party2", {"": {"fox": 2}})
    _png_tree(root / "test" / "party2", {"": {"cat": 1}})
    train = load_dataset("imagefolder-parties", root, "train")
    test = load_dataset("imagefolder-parties", root, "test")
    assert train.classes == test.classes == ["cat", "dog", "fox"]
    np.testing.assert_array_equal(train.targets, [0, 0, 1, 2, 2])
    assert train.parties.tolist() == ["party1"] * 3 + ["party2"] * 2 and test.parties.tolist() == ["party2"]
    assert train[3][0].mode == "RGB" and train.describe(3).endswith("party2/fox/0.png")


def test_imagefolder_parties_layout_errors(tmp_path):
    (tmp_path / "train" / "p" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="must contain train/ and test/, each with one subfolder per party"):
        load_dataset("imagefolder-parties", tmp_path, "train")
    (tmp_path / "test").mkdir()
    with pytest.raises(DatasetError, match="no images found under"):
        load_dataset("imagefolder-parties", tmp_path, "train")


# --------------------------------------------------------------------------- cifar10-mini

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_mini_asset_size():
    assert MINI_ASSET.is_file()
    assert MINI_ASSET.stat().st_size < 10 * 1024 * 1024


@pytest.mark.parametrize(("split", "n", "per_class"), [("train", 5000, 500), ("test", 1000, 100)])
def test_cifar10_mini(split, n, per_class):
    ds = load_dataset("cifar10-mini", "/ignored/root", split)
    assert len(ds) == n
    assert ds.classes == CIFAR10_CLASSES
    assert ds.targets.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(ds.targets, minlength=10), [per_class] * 10)
    img, label = ds[n - 1]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)
    assert type(label) is int and label == ds.targets[n - 1]
    assert load_dataset("cifar10-mini", None, split).source.blob is ds.source.blob  # read once, decoded per image


def test_cifar10_mini_provenance():
    with np.load(MINI_ASSET) as npz:
        assert int(npz["seed"]) == 0
        np.testing.assert_array_equal(npz["train_per_class"], [500] * 10)
        np.testing.assert_array_equal(npz["test_per_class"], [100] * 10)
        assert len(set(npz["train_files"].tolist())) == 5000


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason=f"{SHARED_CIFAR} not available")
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_mini_matches_source_jpegs(split):
    ds = load_dataset("cifar10-mini", None, split)
    with np.load(MINI_ASSET) as npz:
        files, offsets, blob = npz[f"{split}_files"], npz[f"{split}_offsets"], npz[f"{split}_jpeg"]
    step = 7 if split == "train" else 1  # every test image, a spread of train images (keeps it fast)
    for i in range(0, len(files), step):
        raw = (SHARED_CIFAR / files[i]).read_bytes()
        assert blob[offsets[i]:offsets[i + 1]].tobytes() == raw  # original bytes, not re-encoded
        cls = Path(files[i]).parent.name
        assert ds.classes[ds.targets[i]] == cls
        with Image.open(io.BytesIO(raw)) as im:
            np.testing.assert_array_equal(np.asarray(ds[i][0]), np.asarray(im.convert("RGB")))
