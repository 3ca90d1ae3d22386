"""Multi-machine simulation, on one machine: a scenario joins an existing Ray cluster
(`ray start --head` on loopback, its own temp dir) through federation.ray_address."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import REPO

RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    finally:  # stops the Ray processes of this machine, i.e. this test's head node
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
