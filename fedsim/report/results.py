"""Atomic run folders: everything is written to a hidden temporary folder that is renamed
to ``<output_dir>/<YYYYmmdd-HHMMSS>-<name>`` only when the run has finished, so a crash
never leaves a half-written result behind (a failed run keeps its log in ``*-failed``).

An interrupted run (Ctrl-C, SIGTERM) is never deleted: it is kept as ``*-failed`` with its
log, unless the driver had already marked it complete (results and report written), in
which case it gets its normal name.  The final rename is shielded from a second signal."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from fedsim.config import to_toml
from fedsim.interrupts import deferred_interrupts
from fedsim.logs import file_handler

log = logging.getLogger(__name__)


def _jsonable(obj: Any) -> Any:
    """NaN/inf become null so results.json stays valid JSON for every reader."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _jsonable(obj.item())
    return obj


def write_text(path: Path, text: str) -> None:
    """Write a file atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


class RunFolder:
    """Context manager owning one run folder and its ``log.txt``."""

    def __init__(self, output_dir: str | Path, name: str, scenario: dict[str, Any]) -> None:
        self.output_dir = Path(output_dir)
        self.name = name
        self.scenario = scenario
        self.final_path: Path | None = None
        self.completed = False

    def __enter__(self) -> "RunFolder":
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.stamp}-{self.name}-", dir=self.output_dir))
        write_text(self.path / "scenario.toml", to_toml(self.scenario))
        self._handler = file_handler(self.path / "log.txt")
        root = logging.getLogger()
        root.addHandler(self._handler)
        self._old_level = root.level
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        return self

    def mark_complete(self) -> None:
        """The results and the report are written: from here on an interrupt (Ctrl-C,
        SIGTERM) keeps the run under its normal name instead of ``-failed``."""
        self.completed = True

    def _target(self, suffix: str = "") -> Path:
        base = self.output_dir / f"{self.stamp}-{self.name}{suffix}"
        candidate, n = base, 1
        while candidate.exists():
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        return candidate

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        with deferred_interrupts():  # a second Ctrl-C must not leave the hidden folder behind
            interrupted = isinstance(exc, KeyboardInterrupt)
            if interrupted:
                how = getattr(exc, "signal_name", "SIGINT")
                log.warning("run interrupted by %s%s", how, " after it had completed" if self.completed else "")
            elif exc is not None:
                log.error("run failed: %s: %s", type(exc).__name__, exc)
            root = logging.getLogger()
            root.removeHandler(self._handler)
            root.setLevel(self._old_level)
            self._handler.close()
            failed = exc is not None and not (interrupted and self.completed)
            self.final_path = self._target("-failed" if failed else "")
            os.chmod(self.path, 0o755)  # mkdtemp makes 0700
            os.replace(self.path, self.final_path)
            if interrupted:
                log.warning("run folder kept as %s", self.final_path)
