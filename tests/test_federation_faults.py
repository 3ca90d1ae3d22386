"""Bad clients on real Flower + Ray: a client that raises, sends a malformed reply or
answers too late is recorded once, left out of later messages, and the run completes --
or stops with one clear error when fewer than federation.min_clients remain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FAULTY = """
name = "faulty"
seed = 3
[federation]
num_clients = 4
min_clients = 1
round_timeout = 45
[audit]
messages = true
[anonymizers.none]
[anonymizers.gaussian]
noise_scale = 0.5
[[federation.faults]]
client = 1
phase = "release"
kind = "raise"
index = 0
[[federation.faults]]
client = 2
phase = "release"
kind = "malformed"
how = "rows"
index = 0
[[federation.faults]]
client = 3
phase = "release"
kind = "timeout"
index = 1
"""


def _run(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedsim", "run", str(path), "--output-dir", str(cwd / "runs")],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def test_faulty_clients_are_recorded_once_and_the_run_completes(tmp_path):
    path = tmp_path / "faulty.toml"
    path.write_text(FAULTY)
    proc = _run(path, tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # finished, with failed clients
    run_dir = Path(proc.stdout.strip().splitlines()[-1].split("results: ")[1]).parent
    assert not run_dir.name.endswith("-failed")
    results = json.loads((run_dir / "results.json").read_text())
    failures = {f["client"]: f for f in results["failures"]}
    assert sorted(failures) == [1, 2, 3] and len(results["failures"]) == 3  # once each
    assert failures[1]["phase"] == "release" and "injected fault" in failures[1]["reason"]
    assert failures[2]["index"] == 0 and "rows; at most" in failures[2]["reason"]  # 10x the rows it owns
    assert failures[3]["index"] == 1 and "no reply within the round timeout" in failures[3]["reason"]
    assert results["num_failed"] == 3
    by_id = {c["id"]: c for c in results["clients"]}
    assert sorted(by_id) == [0, 1, 2, 3]  # a client that failed later is still listed, as failed
    assert by_id[0]["status"] == "ok" and by_id[3]["status"] == "failed" and by_id[3]["n_train"] > 0
    none, gauss = results["releases"]
    assert [c["id"] for c in none["clients"]] == [0, 3]  # the rejected replies never entered the pool
    assert [c["id"] for c in gauss["clients"]] == [0]
    assert 0 < none["accuracy"]["knn"] <= 1 and 0 < gauss["accuracy"]["knn"] <= 1
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    later = {r["client"] for r in audit if r["index"] == 1 and r["direction"] == "server->client"}
    assert later == {0, 3}  # failed clients get no later messages


def test_too_few_clients_stop_the_run_with_one_error(tmp_path):
    path = tmp_path / "stop.toml"
    path.write_text("""
name = "stop"
[federation]
num_clients = 2
[[federation.faults]]
client = 0
phase = "release"
kind = "raise"
""")
    proc = _run(path, tmp_path)
    assert proc.returncode == 1
    err = [line for line in proc.stderr.splitlines() if line.startswith("fedsim:")]
    assert len(err) == 1 and "below federation.min_clients = 2" in err[0] and "injected fault" in err[0]
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.endswith("-stop-failed")
    results = json.loads((folder / "results.json").read_text())
    assert results["stopped"] and results["failures"][0]["client"] == 0
