"""Flower's deployment engine on 127.0.0.1: a SuperLink and real SuperNodes, each a process
of its own, running fedsim's ClientApp from their node configs.

* a SuperNode whose key was not registered is refused by a SuperLink with node
  authentication (default suite, ~20 s);
* the quickstart (3 clients) through ``fedsim deploy local`` -- ``flwr run`` on a SuperLink
  with TLS and node authentication and 3 SuperNodes -- gives the same results as the
  simulation with the same scenario and federation key, every deterministic number
  identical (default suite: one simulation, ~95 s, and one deployment, ~185 s, on 2 cores
  shared with other jobs);
* the same without TLS (slow suite);
* a SuperNode killed mid-run: the run completes, the failure recorded once (slow);
* Ctrl-C stops every process the deployment started (slow).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fedsim.clients.keys import write_key_file
from fedsim.report.equality import differences

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUICKSTART = REPO / "scenarios" / "quickstart.toml"
# the quickstart on 3 clients; the driver-only embedding figures are skipped (no numbers in them)
OVERRIDES = ["federation.num_clients=3", "plots.embeddings=off"]
TIMEOUT_S = 900

pytestmark = pytest.mark.skipif(not all((BIN / t).is_file() for t in ("flwr", "flower-superlink", "flower-supernode")),
                                reason="Flower's command-line tools are not installed next to this Python")


def _fedsim(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedsim", *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                          cwd=cwd)


def _results(proc: subprocess.CompletedProcess) -> tuple[Path, dict]:
    found = re.findall(r"^results: (.+results\.json)$", proc.stdout, flags=re.M)
    assert proc.returncode == 0 and found, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    path = Path(found[-1])
    return path.parent, json.loads(path.read_text())


@pytest.fixture(scope="module")
def federation_key(tmp_path_factory) -> Path:
    key = tmp_path_factory.mktemp("key") / "federation.key"
    write_key_file(key)
    return key


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, federation_key) -> dict:
    """The quickstart on the simulation engine (it also fills the session's embedding cache)."""
    out = tmp_path_factory.mktemp("sim-runs")
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    _, results = _results(_fedsim("run", str(QUICKSTART), *sets, "--federation-key-file", str(federation_key),
                                  "--output-dir", str(out)))
    assert results["engine"] == "simulation"
    return results


def _deploy(out: Path, key: Path, *extra: str) -> tuple[Path, dict, str]:
    sets = [a for o in OVERRIDES[1:] for a in ("--set", o)]
    proc = _fedsim("deploy", "local", "--clients", "3", str(QUICKSTART), *sets, "--federation-key-file", str(key),
                   "--output-dir", str(out), "--quiet", *extra)
    run_dir, results = _results(proc)
    return run_dir, results, proc.stderr


def _check_equal(simulated: dict, deployed: dict) -> None:
    assert deployed["engine"] == "flwr-run" and deployed["num_failed"] == 0, deployed["failures"]
    assert [c["id"] for c in deployed["clients"]] == [0, 1, 2]
    assert [r["label"] for r in deployed["releases"]] == [r["label"] for r in simulated["releases"]]
    assert differences(simulated, deployed) == []


@pytest.mark.slow  # ~5 min (a simulation and a deployment); CI runs it, the refusal test stays in the default suite
def test_quickstart_with_tls_and_node_auth_equals_the_simulation(tmp_path, simulated, federation_key):
    run_dir, deployed, log = _deploy(tmp_path / "runs", federation_key)
    assert "(TLS + node authentication)" in log
    assert (run_dir / "report.html").is_file() and (run_dir / "scenario.toml").is_file()
    _check_equal(simulated, deployed)
    # the permutation release was keyed: the clients found the key in their node config
    perm = next(r for r in deployed["releases"] if r["method"] == "permutation")
    assert not perm["failed"] and perm["accuracy"] == deployed["releases"][0]["accuracy"]
    assert not list((tmp_path / "runs").glob(".*"))  # no half-written folder


@pytest.mark.slow
def test_quickstart_insecure_equals_the_simulation(tmp_path, simulated, federation_key):
    _, deployed, log = _deploy(tmp_path / "runs", federation_key, "--insecure")
    assert "(insecure)" in log
    _check_equal(simulated, deployed)


def test_a_supernode_without_a_registered_key_is_refused(tmp_path):
    from fedsim.deploy.certs import write_certificates
    from fedsim.deploy.flwr_cli import Connection, FlwrCli, base_env, tool
    from fedsim.deploy.nodeauth import write_node_keys
    from fedsim.deploy.processes import ProcessGroups, free_port, tail, wait_healthy

    certs = write_certificates(tmp_path / "certs")
    port = free_port()
    home = tmp_path / "superlink"
    connection = Connection("auth-test", f"127.0.0.1:{port}", certs.ca)
    connection.write(home)
    env = base_env(home)
    cli = FlwrCli(connection, env, tmp_path)

    def supernode(procs, name, *auth):
        argv = [tool("flower-supernode"), "--superlink", f"127.0.0.1:{port}", "--port", str(free_port()),
                "--root-certificates", str(certs.ca), "--node-config", "partition-id=0 num-partitions=1", *auth]
        return procs.start(name, argv, base_env(tmp_path / name), tmp_path / f"{name}.log", cwd=tmp_path)

    def nodes() -> list[dict]:
        done = cli._call("supernode", "list", connection.name, "--format", "json")
        return json.loads(done.stdout)["nodes"]

    with ProcessGroups() as procs:
        superlink = procs.start("superlink", [tool("flower-superlink"), "--host", "127.0.0.1", "--port", str(port),
                                              *certs.superlink_args(), "--enable-supernode-auth"],
                                env, tmp_path / "superlink.log", cwd=tmp_path)
        wait_healthy(f"https://127.0.0.1:{port}/health", superlink, 60, certs.ca)
        party, rogue = write_node_keys(tmp_path / "keys", "party"), write_node_keys(tmp_path / "keys", "rogue")
        node_id = cli.register(party.public, "party")
        member = supernode(procs, "member", "--auth-supernode-private-key", str(party.private))
        intruder = supernode(procs, "intruder", "--auth-supernode-private-key", str(rogue.private))
        anonymous = supernode(procs, "anonymous")  # no key at all
        for refused in (intruder, anonymous):
            try:
                code = refused.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{refused.name} was not refused within 90 s:\n{tail(refused.log_path)}")
            assert code != 0, tail(refused.log_path)
        assert "Failed to activate SuperNode" in refused_text(intruder.log_path)
        deadline = time.monotonic() + 60
        while (listed := nodes()) and listed[0].get("status") != "online" and time.monotonic() < deadline:
            time.sleep(1)
        assert member.alive(), tail(member.log_path)
        assert [(int(n["node-id"]), n["status"]) for n in listed] == [(node_id, "online")], listed
        assert "No SuperNode found with the given public key" in refused_text(superlink.log_path)


def refused_text(path: Path) -> str:
    return path.read_text(errors="replace")


SMALL = """\
name = "killed"
seed = 5
[federation]
num_clients = 3
min_clients = 2
round_timeout = 120
[anonymizers.none]
[anonymizers.gaussian]
noise_scale = 0.5
[classifiers.knn]
k = 5
"""


@pytest.mark.slow
def test_a_supernode_killed_mid_run_is_recorded_and_the_run_completes(tmp_path):
    """Client 2 answers the first configuration, then its SuperNode is killed (SIGKILL, its
    whole process group): the SuperLink reports it unavailable (or the round times out),
    the server records the failure once and finishes with the other two."""
    from fedsim.deploy.local import LocalDeployment, run_local

    scenario = tmp_path / "killed.toml"
    scenario.write_text(SMALL)
    killed: list[float] = []

    def kill_after_first_reply(nodes, run_id) -> None:
        victim = next(n for n in nodes if n.name == "supernode-2")

        def watch() -> None:
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline:
                if "Sent successfully" in victim.log_path.read_text(errors="replace"):
                    os.killpg(victim.proc.pid, signal.SIGKILL)
                    killed.append(time.monotonic())
                    return
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()

    result = run_local(LocalDeployment(scenario_path=scenario, output_dir=tmp_path / "runs", secure=False,
                                       timeout=TIMEOUT_S, on_submitted=kill_after_first_reply))
    assert killed, "the SuperNode was never killed"
    assert result.status == "finished:completed" and not result.run_dir.name.endswith("-failed")
    results = json.loads((result.run_dir / "results.json").read_text())
    assert results["num_failed"] == 1 and len(results["failures"]) == 1, results["failures"]
    failure = results["failures"][0]
    assert (failure["client"], failure["index"], failure["phase"]) == (2, 1, "release"), failure
    assert "no reply within the round timeout" in failure["reason"] or "Flower error code" in failure["reason"]
    by_id = {c["id"]: c for c in results["clients"]}
    assert by_id[2]["status"] == "failed" and by_id[0]["status"] == by_id[1]["status"] == "ok"
    none, gauss = results["releases"]
    assert [c["id"] for c in none["clients"]] == [0, 1, 2] and [c["id"] for c in gauss["clients"]] == [0, 1]


def _processes_under(folder: Path) -> list[str]:
    """Processes whose command line or working directory is inside ``folder``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if str(folder) in cmd or cwd.startswith(str(folder)):
            found.append(f"{pid}: {cmd[:200]}")
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
def test_ctrl_c_stops_every_process_the_deployment_started(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "fedsim", "deploy", "local", "--clients", "3", str(QUICKSTART),
                             "--output-dir", str(tmp_path / "runs"), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not any("submitted" in line for line in lines) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert any("submitted" in line for line in lines), "".join(lines)[-4000:]
    time.sleep(5)  # the SuperNodes are at work
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    reader.join(timeout=10)
    text = "".join(lines)
    assert "interrupted by SIGINT" in text, text[-3000:]
    kept = re.search(r"deployment folder kept: (\S+)", text)
    assert kept, text[-3000:]
    time.sleep(2)  # the SuperExecs notice their parent is gone
    workdir = Path(kept.group(1))
    try:
        assert _processes_under(workdir) == []
        runs = list((tmp_path / "runs").iterdir()) if (tmp_path / "runs").is_dir() else []
        # the ServerApp, stopped, kept what it had as -failed; nothing half-written is left
        assert all(p.name.endswith("-quickstart-failed") for p in runs), runs
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
