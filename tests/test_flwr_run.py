"""End-to-end: the module-level Flower apps run under ``flwr run .`` on a simulation SuperLink.

The test starts its own ``flower-superlink --simulation`` on a free loopback port, with a
private ``FLWR_HOME`` holding a ``ci`` connection, submits the repository as a FAB with
``flwr run``, polls ``flwr list`` for the final status (the exit code of ``flwr run`` says
nothing about the run itself) and reads the run folder the ServerApp wrote.
About 20-30 s on a 2-core CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fedsim.clients.keys import write_key_file

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FLWR = BIN / "flwr"
SUPERLINK = BIN / "flower-superlink"
DEADLINE_S = 180.0

SCENARIO = """\
name = "flwrrun"
seed = 7

[data]
dataset = "cifar10-mini"

[federation]
num_clients = 2

[anonymizers.none]

[anonymizers.permutation]

[classifiers.knn]
k = 5
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 6000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as err:
        return f"<cannot read {path}: {err}>"


@pytest.fixture
def superlink(tmp_path):
    """A simulation SuperLink on a free port; yields (env for the flwr CLI, its log path)."""
    if not (FLWR.is_file() and SUPERLINK.is_file()):
        pytest.skip(f"flwr / flower-superlink not found next to {sys.executable}")
    home = tmp_path / "flwr-home"
    home.mkdir()
    port = _free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "ci"\n\n[superlink.ci]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        # Never `uv sync` the app's dependencies into a per-run venv: use this environment.
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RAY_ADDRESS": "local",  # a stale /tmp/ray cluster file would make ray.init() hang
        # The SuperLink launches `flower-superexec` by name, so the venv's bin must be on PATH.
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        # the clients' federation key: on the client side only (the simulated SuperNodes' env)
        "FEDSIM_FEDERATION_KEY_FILE": str(tmp_path / "federation.key"),
    }
    write_key_file(tmp_path / "federation.key")
    log_path = tmp_path / "superlink.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [str(SUPERLINK), "--insecure", "--simulation", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )
    try:
        ready_by = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"flower-superlink exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                pass
            if time.monotonic() > ready_by:
                pytest.fail(f"flower-superlink not healthy within 60 s:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield env, log_path
    finally:
        # Only the process this fixture started; it stops the superexec it spawned itself.
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _flwr(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(FLWR), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_flwr_run_completes_and_writes_results(tmp_path, superlink):
    env, sl_log = superlink
    scenario = tmp_path / "flwrrun.toml"
    scenario.write_text(SCENARIO)
    out_dir = tmp_path / "runs"

    submitted = _flwr(
        env, "run", str(REPO), "ci", "--format", "json",
        "--run-config", f"scenario='{scenario.resolve()}' output-dir='{out_dir.resolve()}'",
        "--federation-config", "num-supernodes=2 client-resources-num-cpus=1",
    )
    try:
        run_id = str(json.loads(submitted.stdout)["run-id"])
    except (ValueError, KeyError) as err:
        pytest.fail(
            f"flwr run gave no run id ({err!r}); rc={submitted.returncode}\n"
            f"stdout:\n{submitted.stdout}\nstderr:\n{submitted.stderr}\nsuperlink log:\n{_tail(sl_log)}"
        )

    def diagnostics() -> str:
        try:
            shown = _flwr(env, "log", run_id, "ci", "--show", timeout=60)
            run_log = shown.stdout + shown.stderr
        except subprocess.TimeoutExpired:
            run_log = "<flwr log timed out>"
        return f"flwr log {run_id}:\n{run_log[-8000:]}\nsuperlink log:\n{_tail(sl_log)}"

    # Each `flwr list` is a ~1 s CPU-bound CLI start that competes with the simulated clients
    # on small machines, so ask the SuperLink only every few seconds, or at once when the
    # ServerApp has published its run folder (it does so, renamed, when main() ends).
    status, deadline, next_ask = "", time.monotonic() + DEADLINE_S, time.monotonic() + 5
    while not status.startswith("finished"):
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} still {status!r} after {DEADLINE_S:.0f} s\n{diagnostics()}")
        time.sleep(0.5)
        published = out_dir.is_dir() and any(not p.name.startswith(".") for p in out_dir.iterdir())
        if not (published or time.monotonic() > next_ask):
            continue
        next_ask = time.monotonic() + 10
        listed = _flwr(env, "list", "ci", "--run-id", run_id, "--format", "json", timeout=60)
        try:
            status = json.loads(listed.stdout)["runs"][0]["status"]
        except (ValueError, KeyError, IndexError):
            status = ""  # transient; retried until the deadline
    assert status == "finished:completed", f"run {run_id} ended {status!r}\n{diagnostics()}"

    folders = sorted(p for p in out_dir.glob("*-flwrrun") if p.is_dir())
    assert len(folders) == 1, f"expected one run folder in {out_dir}, got {list(out_dir.iterdir())}\n{diagnostics()}"
    results = json.loads((folders[0] / "results.json").read_text())
    assert results["engine"] == "flwr-run"
    assert results["num_clients"] == 2
    assert results["num_failed"] == 0, results["clients"]
    assert [c["status"] for c in results["clients"]] == ["ok", "ok"], results["clients"]
    assert sorted(c["id"] for c in results["clients"]) == [0, 1]
    assert results["accuracy"]["knn"] > 0.15, results["accuracy"]
    none, perm = results["releases"]  # the keyed method found the clients' key, not the server
    assert perm["accuracy"] == none["accuracy"] and not perm["failed"], perm["failed"]
