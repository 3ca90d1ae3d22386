"""Multi-machine simulation, on one machine: a scenario joins an existing Ray cluster
(`ray start --head` on loopback, its own temp dir) through federation.ray_address."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # starts and stops a second Ray instance (~45 s); CI runs it with the slow tests
def test_scenario_runs_on_an_existing_ray_cluster(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # the scenario names the cluster
    temp = tempfile.mkdtemp(prefix="fedsim-ray-", dir="/tmp")  # Ray's socket paths must stay short
    head = subprocess.run([str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                           "--num-cpus=2", f"--temp-dir={temp}", "--include-dashboard=false", "--disable-usage-stats"],
                          env=env, capture_output=True, text=True, timeout=180)
    try:
        assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
        proc = subprocess.run(
            [sys.executable, "-m", "fedsim", "run", str(REPO / "scenarios" / "quickstart.toml"), "--output-dir",
             str(tmp_path / "runs"), "--set", "federation.num_clients=2", f"federation.ray_address='127.0.0.1:{port}'",
             "plots.embeddings='off'"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-4000:]
        run_dir = Path(proc.stdout.strip().splitlines()[-1].split("results: ")[1]).parent
        results = json.loads((run_dir / "results.json").read_text())
        assert results["num_failed"] == 0 and results["accuracy"]["knn"] > 0.5
        assert (run_dir / "report.html").is_file()  # results came back to the driver's machine
    finally:
        _stop_head(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_head(temp: str) -> None:
    """Stop this test's head node only: every process whose command line names its temp dir
    (GCS, raylet, workers, agents). `ray stop` would kill EVERY Ray process of the machine --
    a researcher's own run included (it once took down a run beside the test suite)."""
    def ours() -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as fh:
                        if temp.encode() in fh.read():
                            pids.append(int(entry))
                except OSError:
                    continue
        return pids

    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for pid in ours():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while ours() and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not ours(), "processes of the test's Ray head survived SIGKILL"
