"""On-disk embedding cache, so repeated runs and sweeps skip extraction.

An entry is keyed by everything that determines the numbers: the weights (content hash),
the architecture and its preprocessing, the inference precision and test-time
augmentation, the dataset (name, resolved root, split, size and a hash of its labels) and
the exact image indices.  Any
change of key recomputes; entries are written atomically, so concurrent clients never
read a partial file.  The location is ``$FEDSIM_CACHE_DIR`` or ``~/.cache/fedsim``.

A cache folder that cannot be written (read-only, not a folder, no permission) is not an
error: entries already there are still read, new embeddings are just not stored, and each
process says so once in a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fedsim.diskcache import cache_root

log = logging.getLogger(__name__)


def array_digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype}:{a.shape}".encode() + a.tobytes()).hexdigest()


def embedding_key(
    *, weights_id: str, model: str, preprocessing: dict[str, Any], precision: str, tta: str,
    dataset: str, root: str, split: str, labels: np.ndarray, indices: np.ndarray | None,
) -> dict[str, Any]:
    """The identity of one block of embeddings (JSON-able, stored beside the array)."""
    return {
        "weights_id": weights_id,
        "model": model,
        "preprocessing": preprocessing,
        "precision": precision,
        "tta": tta,
        "dataset": dataset,
        "root": str(Path(root).resolve()) if root else "",
        "split": split,
        "n_images": int(len(labels)),
        "labels_sha256": array_digest(np.asarray(labels, dtype=np.int64)),
        "indices_sha256": "all" if indices is None else array_digest(np.asarray(indices, dtype=np.int64)),
    }


_UNWRITABLE_WARNED: set[str] = set()  # cache roots this process has already warned about


def writable_problem(root: Path) -> str | None:
    """Why new entries cannot be stored under ``root`` (None: they can), by trying it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


def warn_unwritable(root: Path, problem: str) -> None:
    """One warning per cache root and process."""
    if str(root) not in _UNWRITABLE_WARNED:
        _UNWRITABLE_WARNED.add(str(root))
        log.warning("embedding cache %s is not writable (%s): cached embeddings are still read, new ones "
                    "are not stored; set extractor.cache_dir or $FEDSIM_CACHE_DIR to a writable folder, "
                    "or extractor.cache = false", root, problem)


class EmbeddingCache:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else cache_root() / "embeddings"

    def _path(self, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.npy"

    def get(self, key: dict[str, Any], rows: np.ndarray | None = None) -> np.ndarray | None:
        """The entry (only ``rows`` of it, read through a memory map, when given)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            if rows is None:
                return np.load(path, allow_pickle=False)
            return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False)[np.asarray(rows, dtype=np.int64)])
        except (OSError, ValueError) as err:  # a damaged entry is recomputed, not fatal
            log.warning("ignoring unreadable cache entry %s: %s", path, err)
            return None

    def put(self, key: dict[str, Any], emb: np.ndarray) -> Path | None:
        """Store an entry; None when the cache folder cannot be written (warned once)."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".npy.tmp")
        except OSError as err:
            warn_unwritable(self.root, f"{type(err).__name__}: {err.strerror or err}")
            return None
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(emb, dtype=np.float32), allow_pickle=False)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600
            os.replace(tmp, path)
            path.with_suffix(".json").write_text(json.dumps(key, indent=1, sort_keys=True))
        except OSError as err:  # disk full, quota: the run goes on without this entry
            Path(tmp).unlink(missing_ok=True)
            warn_unwritable(self.root, f"{type(err).__name__}: {err.strerror or err}")
            return None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def preprocessing_of(spec: Any) -> dict[str, Any]:
    """The data fields of a ModelSpec (input size, normalisation, resizing)."""
    import dataclasses

    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
            if not callable(getattr(spec, f.name))}


def cached_extract(
    extractor: Any, dataset: Any, *, dataset_name: str, root: str, split: str,
    indices: np.ndarray | None, cache: EmbeddingCache | None, **extract_kwargs: Any,
) -> tuple[np.ndarray, bool]:
    """``extract(...)`` through the cache; returns (embeddings, cache hit?).

    A client's share is also served from an entry of the whole split (``fedsim
    evaluate-extractor`` stores those), reading only the share's rows: any partition, for
    any number of clients, reuses one extraction of the data set."""
    from fedsim.extractors.extract import extract, precision_for

    if cache is None:
        return extract(extractor, dataset, indices, **extract_kwargs), False
    key = embedding_key(
        weights_id=extractor.weights_id, model=extractor.name, preprocessing=preprocessing_of(extractor.spec),
        precision=precision_for(extract_kwargs.get("device", "cpu"), extract_kwargs.get("amp", "auto")),
        tta=extract_kwargs.get("tta", "none"),
        dataset=dataset_name, root=root, split=split, labels=dataset.targets, indices=indices,
    )
    hit = cache.get(key)
    if hit is None and indices is not None:
        hit = cache.get({**key, "indices_sha256": "all"}, rows=indices)
    if hit is not None:
        return hit, True
    emb = extract(extractor, dataset, indices, **extract_kwargs)
    cache.put(key, emb)
    return emb, False
