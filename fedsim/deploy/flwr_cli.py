"""Flower's command-line tools, as a deployment uses them: where they are, the SuperLink
connection they read, and the ``flwr`` calls (register a SuperNode, run, status, stop).

``flwr`` reads its connections from ``$FLWR_HOME/config.toml``; a deployment gets its own
``FLWR_HOME`` so nothing touches the user's ``~/.flwr``.  ``flwr run`` exits 0 even when
the ServerApp fails, so a run's outcome is read with ``flwr list --format json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("flwr", "flower-superlink", "flower-supernode", "flower-superexec")


class DeployError(RuntimeError):
    """A deployment that could not start or finish; the message says which step and why."""


def tool(name: str) -> str:
    """The executable next to this Python (the same environment), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise DeployError(f"{name} not found next to {sys.executable} or on PATH; install flwr (pip install "
                          "'flwr[simulation]') in this environment")
    return found


def base_env(flwr_home: Path) -> dict[str, str]:
    """Environment of every Flower process of a deployment: its own FLWR_HOME, this
    environment's tools first on PATH (the SuperLink and SuperNodes start
    ``flower-superexec`` by name), no per-run ``uv sync`` of the app's dependencies, and no
    federation key in the environment (nodes get theirs through the node config)."""
    env = {k: v for k, v in os.environ.items() if k != "FEDSIM_FEDERATION_KEY_FILE"}
    env.update({
        "FLWR_HOME": str(flwr_home),
        "PATH": os.pathsep.join([str(Path(tool("flower-superexec")).parent), env.get("PATH", "")]),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RAY_ADDRESS": "local",  # never a stale Ray cluster file (nothing here uses Ray; a guard)
        "PYTHONUNBUFFERED": "1",
    })
    return env


@dataclass(frozen=True)
class Connection:
    """A SuperLink connection of the ``flwr`` CLI."""

    name: str
    address: str  # host:port
    root_certificates: Path | None = None  # None: plain HTTP (--insecure)

    def toml(self) -> str:
        tls = (f'root-certificates = "{self.root_certificates}"' if self.root_certificates
               else "insecure = true")
        return (f'[superlink]\ndefault = "{self.name}"\n\n'
                f'[superlink.{self.name}]\naddress = "{self.address}"\n{tls}\n')

    def write(self, flwr_home: Path) -> Path:
        flwr_home.mkdir(parents=True, exist_ok=True)
        path = flwr_home / "config.toml"
        path.write_text(self.toml(), encoding="utf-8")
        return path


class FlwrCli:
    """``flwr`` subcommands against one connection, in one FLWR_HOME."""

    def __init__(self, connection: Connection, env: dict[str, str], cwd: Path) -> None:
        self.connection = connection
        self.env = env
        self.cwd = cwd

    def _call(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([tool("flwr"), *args], env=self.env, cwd=self.cwd, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeployError(f"flwr {args[0]} did not answer within {timeout:.0f} s") from None

    @staticmethod
    def _json(done: subprocess.CompletedProcess, what: str) -> dict:
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise DeployError(f"{what} failed (status {done.returncode}):\n{done.stdout[-2000:]}"
                              f"{done.stderr[-2000:]}") from None

    def register(self, public_key: Path, name: str) -> int:
        """Register a SuperNode's public key; returns the node id the SuperLink gave it."""
        done = self._call("supernode", "register", str(public_key), self.connection.name, "--name", name,
                          "--format", "json")
        reply = self._json(done, f"flwr supernode register {public_key}")
        if not reply.get("success"):
            raise DeployError(f"flwr supernode register {public_key}: {reply}")
        return int(reply["node-id"])

    def run(self, app_dir: Path, run_config: str) -> int:
        """Submit the app (built into a FAB from ``app_dir``); returns the run id."""
        done = self._call("run", str(app_dir), self.connection.name, "--format", "json", "--run-config", run_config,
                          timeout=300)
        reply = self._json(done, "flwr run")
        if "run-id" not in reply:
            raise DeployError(f"flwr run gave no run id: {reply}")
        return int(reply["run-id"])

    def status(self, run_id: int) -> str:
        """``pending``/``starting``/``running``/``finished:<completed|failed|stopped>``; "" if unknown."""
        done = self._call("list", self.connection.name, "--run-id", str(run_id), "--format", "json", timeout=60)
        try:
            return str(json.loads(done.stdout)["runs"][0]["status"])
        except (ValueError, KeyError, IndexError):
            return ""

    def details(self, run_id: int) -> str:
        done = self._call("list", self.connection.name, "--run-id", str(run_id), "--format", "json", timeout=60)
        try:
            run = json.loads(done.stdout)["runs"][0]
            return str(run.get("status-details") or run.get("status", ""))
        except (ValueError, KeyError, IndexError):
            return done.stdout[-1000:] + done.stderr[-1000:]

    def stop(self, run_id: int) -> None:
        """Ask the SuperLink to stop a run (best effort: the SuperLink is stopped next anyway)."""
        try:
            self._call("stop", str(run_id), self.connection.name, timeout=30)
        except DeployError:
            pass

    def log_command(self, run_id: int) -> list[str]:
        """``flwr log --stream``: the ServerApp's log as it runs; ends with the run."""
        return [tool("flwr"), "log", str(run_id), self.connection.name, "--stream"]
