"""Where fedsim keeps what it derives from the data, and how a derived folder is stored.

Everything under the cache root (``$FEDSIM_CACHE_DIR`` or ``~/.cache/fedsim``) can be
recomputed, so a cache that cannot be written never fails a run: the caller computes
in memory instead, and each process warns once per folder.  A derived folder is built
under a temporary name and renamed into place, so a reader never sees half of one and
concurrent builders (several clients starting at once) simply keep the first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_WARNED: set[str] = set()  # folders this process has already warned about


def cache_root() -> Path:
    env = os.environ.get("FEDSIM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "fedsim"


def folder_for(kind: str, key: dict[str, Any]) -> Path:
    """``<cache root>/<kind>/<digest of key>``: the folder of one derived entry."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_root() / kind / digest[:32]


def find(kind: str, key: dict[str, Any]) -> Path | None:
    """The complete folder stored for ``key``, or None."""
    folder = folder_for(kind, key)
    return folder if folder.is_dir() else None


def store(kind: str, key: dict[str, Any], write: Callable[[Path], None], consequence: str) -> Path | None:
    """Build the folder for ``key`` with ``write(tmp_folder)`` and rename it into place.

    Returns the folder, or None when the cache cannot be written; then a warning (once
    per process and kind) says ``consequence``, i.e. what the run does instead.
    """
    final = folder_for(kind, key)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".build-"))
    except OSError as err:
        _warn_unwritable(final.parent, err, consequence)
        return None
    try:
        write(tmp)
        (tmp / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
        os.rename(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if final.is_dir():  # another process stored it first
            return final
        _warn_unwritable(final.parent, err, consequence)
        return None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _warn_unwritable(folder: Path, err: OSError, consequence: str) -> None:
    if str(folder) not in _WARNED:
        _WARNED.add(str(folder))
        log.warning("cache folder %s is not writable (%s: %s): %s; set $FEDSIM_CACHE_DIR to a writable folder",
                    folder, type(err).__name__, err.strerror or err, consequence)
