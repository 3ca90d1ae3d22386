"""Ctrl-C and SIGTERM stop a run within seconds, keep what is complete, mark only an
incomplete run ``-failed`` (never delete it) and leave no Ray process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fedsim.interrupts import Interrupted, deferred_interrupts, run_interruptibly, signals_as_interrupts
from fedsim.report.results import RunFolder
from tests.conftest import REPO


def _signal_self_later(signum: int, delay: float) -> None:
    threading.Timer(delay, os.kill, (os.getpid(), signum)).start()


# ---------------------------------------------------------------- run folders


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Interrupted(signal.SIGTERM)])
def test_an_interrupted_run_is_kept_as_failed_with_its_log(tmp_path, exc):
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(tmp_path, "demo", {"name": "demo"}) as folder:
            (folder.path / "results.json").write_text("{}")  # written, but the run was not complete
            raise exc
    assert folder.final_path.name.endswith("-demo-failed")
    assert "run interrupted by SIG" in (folder.final_path / "log.txt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.final_path.name]  # no hidden folder


def test_an_interrupt_after_completion_keeps_the_normal_name(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(tmp_path, "demo", {"name": "demo"}) as folder:
            folder.mark_complete()
            raise Interrupted(signal.SIGTERM)
    assert folder.final_path.name.endswith("-demo") and (folder.final_path / "log.txt").is_file()
    assert "after it had completed" in (folder.final_path / "log.txt").read_text()
    assert [p.name for p in tmp_path.iterdir()] == [folder.final_path.name]


def test_an_error_after_completion_is_still_failed(tmp_path):
    with pytest.raises(RuntimeError):
        with RunFolder(tmp_path, "demo", {"name": "demo"}) as folder:
            folder.mark_complete()
            raise RuntimeError("plotting broke")
    assert folder.final_path.name.endswith("-demo-failed")


def test_a_signal_during_the_final_rename_waits_for_it(tmp_path, monkeypatch):
    """SIGTERM arriving while the folder is renamed: the rename completes, then it takes effect."""
    real_replace = os.replace

    def slow_replace(src, dst):
        if Path(src).is_dir():  # the run folder, not one of its files
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler would run here, were it not deferred
        real_replace(src, dst)

    monkeypatch.setattr("fedsim.report.results.os.replace", slow_replace)
    with signals_as_interrupts(), pytest.raises(Interrupted) as err:
        with RunFolder(tmp_path, "demo", {"name": "demo"}) as folder:
            pass
    assert err.value.signal_name == "SIGTERM"
    assert folder.final_path.name.endswith("-demo") and folder.final_path.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == [folder.final_path.name]


# ---------------------------------------------------------------- helpers


def test_sigterm_becomes_an_interrupt_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with signals_as_interrupts(), pytest.raises(Interrupted) as err:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert err.value.signum == signal.SIGTERM and isinstance(err.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before


def test_deferred_interrupts_hold_the_signal_until_the_block_ends():
    done = []
    with signals_as_interrupts(), pytest.raises(Interrupted):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            done.append(True)
    assert done == [True]


def test_run_interruptibly_returns_raises_and_stops_on_a_signal():
    assert run_interruptibly(lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(ZeroDivisionError):
        run_interruptibly(lambda: 1 / 0)
    stop = threading.Event()
    _signal_self_later(signal.SIGINT, 0.3)
    t0 = time.perf_counter()
    with pytest.raises(Interrupted):
        run_interruptibly(stop.wait, 60)
    assert time.perf_counter() - t0 < 5
    stop.set()


# ---------------------------------------------------------------- a real run


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":  # a zombie has ended; only its parent has not looked yet
            out[int(entry.name)] = (int(fields[1]), cmd)
    return out


def ray_processes_of(driver_pid: int) -> set[int]:
    """The Ray processes a driver started: its session's raylet and GCS (their command lines
    name ``session_<time>_<driver pid>``) and everything they started (workers, agents)."""
    procs = _processes()
    found = {pid for pid, (_, cmd) in procs.items()
             if f"_{driver_pid}/" in cmd and ("raylet" in cmd or "gcs_server" in cmd)}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_real_run(tmp_path, signum):
    out = tmp_path / "runs"
    env = {**os.environ, "FEDSIM_CACHE_DIR": str(tmp_path / "cache")}  # extraction, not a cache hit
    proc = subprocess.Popen([sys.executable, "-m", "fedsim", "run", str(REPO / "scenarios" / "quickstart.toml"),
                             "--output-dir", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        ray = set()
        while time.monotonic() < deadline and proc.poll() is None:  # until clients are at work
            ray = ray_processes_of(proc.pid)
            hidden = list(out.glob(".*")) if out.is_dir() else []
            if hidden and any("ClientAppActor" in cmd for pid, (_, cmd) in _processes().items() if pid in ray):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(2)
        ray = ray_processes_of(proc.pid) | ray
        proc.send_signal(signum)
        t0 = time.monotonic()
        stdout, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert took < 20, f"took {took:.0f} s to stop"
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == f"fedsim: interrupted by {signal.Signals(signum).name}"
    assert "Traceback" not in stderr, stderr[-3000:]
    entries = list(out.iterdir())
    assert len(entries) == 1 and entries[0].name.endswith("-quickstart-failed"), entries  # no hidden folder
    log = (entries[0] / "log.txt").read_text()
    assert f"run interrupted by {signal.Signals(signum).name}" in log
    assert ray, "no Ray process was seen during the run"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (ray & set(_processes()) or ray_processes_of(proc.pid)):
        time.sleep(0.5)
    left = {pid: _processes().get(pid) for pid in ray & set(_processes())}
    assert not left and not ray_processes_of(proc.pid), f"Ray processes left: {left}"
