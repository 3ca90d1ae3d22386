"""Start Flower's own processes (SuperLink, SuperNodes) and always stop them again.

Each process is started in its own session (process group), so stopping it also stops
what it spawned (``flower-superexec``, the ``flwr-serverapp`` / ``flwr-clientapp``
children) and nothing else on the machine: only the groups this object started are
signalled -- never processes found by name.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

STOP_WAIT_S = 10.0  # SIGTERM, then SIGKILL after this long


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tail(path: Path, chars: int = 4000) -> str:
    """The end of a log file (for error messages)."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as err:
        return f"<cannot read {path}: {err.strerror}>"


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when this process dies, even by SIGKILL (Linux
    ``PR_SET_PDEATHSIG``), so a killed ``fedsim deploy local`` leaves no SuperLink behind."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Started:
    name: str
    proc: subprocess.Popen
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    def alive(self) -> bool:
        return self.proc.poll() is None


class ProcessGroups:
    """The processes of one deployment; a context manager that stops them all on exit
    (normal end, exception, or a KeyboardInterrupt raised by SIGINT/SIGTERM)."""

    def __init__(self) -> None:
        self.started: list[Started] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> Started:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "ab")  # noqa: SIM115 -- closed in stop()
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent)
        started = Started(name, proc, log_path, log_file)
        self.started.append(started)
        log.debug("started %s (pid %d): %s", name, proc.pid, " ".join(argv))
        return started

    def kill(self, started: Started, sig: int = signal.SIGKILL) -> None:
        """Signal one process group (the test's 'party crashes' case uses SIGKILL)."""
        if started.alive():
            try:
                os.killpg(started.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, started: Started) -> None:
        """SIGTERM to the group, SIGKILL after STOP_WAIT_S; then reap."""
        self.kill(started, signal.SIGTERM)
        try:
            started.proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s: killing it", started.name, started.proc.pid,
                        STOP_WAIT_S)
            self.kill(started, signal.SIGKILL)
            started.proc.wait(timeout=STOP_WAIT_S)
        # children that outlived their leader still belong to its group
        try:
            os.killpg(started.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        started.log_file.close()

    def stop_all(self) -> None:
        """Stop in reverse start order (SuperNodes before the SuperLink)."""
        while self.started:
            started = self.started.pop()
            try:
                self.stop(started)
            except Exception as err:  # keep stopping the others
                log.warning("could not stop %s (pid %d): %s", started.name, started.proc.pid, err)

    def __enter__(self) -> ProcessGroups:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def wait_healthy(url: str, started: Started, timeout: float, ca_file: Path | None = None) -> None:
    """Poll ``url`` until it answers; a RuntimeError with the process's log otherwise."""
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    deadline = time.monotonic() + timeout
    while True:
        if not started.alive():
            raise RuntimeError(f"{started.name} exited with status {started.proc.returncode}:\n"
                               f"{tail(started.log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{started.name} did not answer {url} within {timeout:.0f} s:\n{tail(started.log_path)}")
        time.sleep(0.2)
