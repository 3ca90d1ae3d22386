"""``fedsim deploy local``: a whole deployment on this machine, as parties run it across machines.

One SuperLink and N SuperNodes, each a Flower process of its own on a free loopback port,
each with its own ``FLWR_HOME`` (its own installed copy of the app), all in a private
temporary folder.  By default the SuperLink serves TLS with a certificate signed by a
fresh CA, and accepts only SuperNodes whose public keys were registered with ``flwr
supernode register`` (Flower's node authentication); ``secure=False`` runs plain HTTP.
The scenario goes to the ServerApp through the run config; every SuperNode's node config
names its partition, the federation key file and anything else local to it (the server
never sees those).  ``flwr run`` submits the app; the ServerApp writes the usual run
folder.  Every process started here is stopped when the run ends, fails, or is
interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.clients.keys import NODE_KEY, read_key_file, write_key_file
from fedsim.clients.node_config import (NUM_PARTITIONS, PARTITION_ID, NodeConfigError, format_node_config,
                                        parse_node_config)
from fedsim.config import Scenario, load_scenario, to_toml
from fedsim.deploy.certs import write_certificates
from fedsim.deploy.flwr_cli import Connection, DeployError, FlwrCli, base_env, tool
from fedsim.deploy.nodeauth import write_node_keys
from fedsim.deploy.processes import ProcessGroups, Started, free_port, tail, wait_healthy

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0


def app_dir_default() -> Path:
    """The Flower app this fedsim comes from: the source checkout holding its pyproject.toml."""
    import fedsim

    return Path(fedsim.__file__).resolve().parents[1]


def check_app_dir(app_dir: Path) -> Path:
    pyproject = app_dir / "pyproject.toml"
    if not pyproject.is_file() or "[tool.flwr.app]" not in pyproject.read_text(encoding="utf-8"):
        raise ValueError(f"--app {app_dir} is not fedsim's Flower app (no pyproject.toml with [tool.flwr.app]); run "
                          "from a fedsim source checkout or give its folder with --app")
    return app_dir.resolve()


@dataclass
class LocalDeployment:
    """Settings of one local deployment (``fedsim deploy local``)."""

    scenario_path: Path
    overrides: list[str] = field(default_factory=list)
    clients: int | None = None  # None: the scenario's federation.num_clients
    output_dir: Path | None = None  # None: the scenario's output_dir
    secure: bool = True  # TLS + SuperNode authentication
    key_file: Path | None = None  # None: a fresh federation key
    node_config: dict[str, Any] = field(default_factory=dict)  # extra keys for every SuperNode
    app_dir: Path | None = None
    timeout: float = 1800.0  # the whole run, from submission
    keep_workdir: bool = False
    echo: bool = False  # stream the ServerApp's log to this process's stdout
    #: called with (SuperNode processes, run id) once the run is submitted (tests use it)
    on_submitted: Callable[[list[Started], int], None] | None = None

    def scenario(self) -> Scenario:
        overrides = list(self.overrides)
        if self.clients is not None:
            if self.clients < 1:
                raise ValueError(f"--clients {self.clients}: must be >= 1")
            overrides.append(f"federation.num_clients={self.clients}")
        return load_scenario(self.scenario_path, overrides)


@dataclass
class DeployResult:
    run_dir: Path
    run_id: int
    status: str
    workdir: Path | None  # kept for inspection (failure or keep_workdir), else None
    seconds: dict[str, float]


def node_configs(n: int, key_file: Path | None, extra: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every SuperNode's node config, validated (files and folders must exist) before anything
    starts; ``key_file`` None checks the rest only."""
    fixed = {PARTITION_ID, NUM_PARTITIONS, NODE_KEY} & set(extra)
    if fixed:
        raise NodeConfigError(f"node config {sorted(fixed)[0]} is set per SuperNode by fedsim deploy local")
    key = {NODE_KEY: str(key_file)} if key_file else {}
    configs = [{PARTITION_ID: i, NUM_PARTITIONS: n, **key, **extra} for i in range(n)]
    for config in configs:
        parse_node_config(config)
    return configs


def _new_run_folder(output_dir: Path, before: set[str], name: str) -> Path | None:
    """The run folder the ServerApp published (renamed from its hidden temporary name)."""
    if not output_dir.is_dir():
        return None
    fresh = [p for p in output_dir.iterdir()
             if p.name not in before and not p.name.startswith(".") and p.is_dir() and f"-{name}" in p.name]
    return max(fresh, key=lambda p: p.stat().st_mtime) if fresh else None


def run_local(opts: LocalDeployment) -> DeployResult:
    """Run one scenario on a local deployment; returns the run folder and the run's status.

    A DeployError says which step failed, with the end of the log concerned; the temporary
    folder (every process's log) is then kept and named in the message."""
    t_start = time.perf_counter()
    # bad input stops here, before any process starts (ScenarioError, NodeConfigError, ValueError)
    scenario = opts.scenario()
    n = scenario.federation.num_clients
    node_configs(n, None, opts.node_config)
    if opts.key_file:
        read_key_file(opts.key_file)
    app_dir = check_app_dir(opts.app_dir or app_dir_default())
    out_dir = Path(opts.output_dir or scenario.output_dir).expanduser().resolve()
    for name in ("flower-superlink", "flower-supernode", "flwr", "flower-superexec"):
        tool(name)
    workdir = Path(tempfile.mkdtemp(prefix=f"fedsim-deploy-{scenario.name}-"))
    keep = opts.keep_workdir
    try:
        key_file = opts.key_file.resolve() if opts.key_file else workdir / "federation.key"
        if not opts.key_file:
            write_key_file(key_file)
        configs = node_configs(n, key_file, opts.node_config)
        scenario_file = workdir / "scenario.toml"
        scenario_file.write_text(to_toml(scenario.to_dict()), encoding="utf-8")
        result = _deploy(opts, scenario, configs, app_dir, out_dir, scenario_file, workdir, t_start)
        keep = keep or result.status != "finished:completed"
        return DeployResult(result.run_dir, result.run_id, result.status, workdir if keep else None,
                            result.seconds)
    except BaseException as err:
        keep = True
        if isinstance(err, DeployError):
            raise DeployError(f"{err}\n(every process's log is in {workdir})") from None
        raise
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log.info("deployment folder kept: %s", workdir)


def _deploy(opts: LocalDeployment, scenario: Scenario, configs: list[dict[str, Any]], app_dir: Path,
            out_dir: Path, scenario_file: Path, workdir: Path, t_start: float) -> DeployResult:
    seconds: dict[str, float] = {}
    certs = write_certificates(workdir / "certs") if opts.secure else None
    port = free_port(HOST)
    home = workdir / "superlink"
    connection = Connection("fedsim-local", f"{HOST}:{port}", certs.ca if certs else None)
    connection.write(home)
    env = base_env(home)
    cli = FlwrCli(connection, env, workdir)
    with ProcessGroups() as procs:
        argv = [tool("flower-superlink"), "--host", HOST, "--port", str(port),
                "--disable-runtime-dependency-installation"]
        argv += [*certs.superlink_args(), "--enable-supernode-auth"] if certs else ["--insecure"]
        superlink = procs.start("superlink", argv, env, workdir / "logs" / "superlink.log", cwd=workdir)
        scheme = "https" if certs else "http"
        wait_healthy(f"{scheme}://{HOST}:{port}/health", superlink, READY_TIMEOUT_S, certs.ca if certs else None)
        seconds["superlink_ready_s"] = time.perf_counter() - t_start

        nodes = []
        for config in configs:
            pid = config[PARTITION_ID]
            node_home = workdir / f"supernode-{pid}"
            node_home.mkdir(parents=True, exist_ok=True)
            argv = [tool("flower-supernode"), "--superlink", f"{HOST}:{port}", "--host", HOST,
                    "--port", str(free_port(HOST)), "--node-config", format_node_config(config)]
            if certs:
                keys = write_node_keys(workdir / "node-keys", f"supernode-{pid}")
                cli.register(keys.public, f"supernode-{pid}")  # the operator registers the party's public key
                argv += ["--root-certificates", str(certs.ca), "--auth-supernode-private-key", str(keys.private)]
            else:
                argv += ["--insecure"]
            nodes.append(procs.start(f"supernode-{pid}", argv, {**base_env(node_home / "flwr-home")},
                                     workdir / "logs" / f"supernode-{pid}.log", cwd=node_home))
        seconds["nodes_started_s"] = time.perf_counter() - t_start

        out_dir.mkdir(parents=True, exist_ok=True)
        before = {p.name for p in out_dir.iterdir()}
        run_config = f"scenario='{scenario_file}' output-dir='{out_dir}'"
        run_id = cli.run(app_dir, run_config)
        seconds["submitted_s"] = time.perf_counter() - t_start
        log.info("run %d submitted: %d SuperNodes on %s:%d (%s)", run_id, len(nodes), HOST, port,
                 "TLS + node authentication" if certs else "insecure")
        logs = procs.start("flwr-log", cli.log_command(run_id), env, workdir / "logs" / "serverapp.log", cwd=workdir)
        if opts.echo:
            _Echo.attach(logs)
        if opts.on_submitted is not None:
            opts.on_submitted(nodes, run_id)
        try:
            status, run_dir = _wait(cli, run_id, superlink, logs, out_dir, before, scenario.name, opts)
        except BaseException:
            cli.stop(run_id)
            raise
        seconds["total_s"] = time.perf_counter() - t_start
        log.info("run %d %s; %s", run_id, status, ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    if run_dir is None:
        raise DeployError(f"run {run_id} ended {status!r} without a run folder in {out_dir}: "
                          f"{cli.details(run_id)}\nServerApp log:\n{tail(workdir / 'logs' / 'serverapp.log')}")
    return DeployResult(run_dir, run_id, status, workdir, seconds)


class _Echo:
    """Copy a process's log file to this process's stdout as it grows (``--echo``)."""

    @staticmethod
    def attach(started: Started) -> None:
        import sys
        import threading

        def follow() -> None:
            with open(started.log_path, errors="replace") as fh:
                while True:
                    line = fh.readline()
                    if line:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    elif not started.alive():
                        sys.stdout.write(fh.read())
                        return
                    else:
                        time.sleep(0.2)

        threading.Thread(target=follow, name="fedsim-deploy-echo", daemon=True).start()


def _wait(cli: FlwrCli, run_id: int, superlink: Started, logs: Started, out_dir: Path, before: set[str],
          name: str, opts: LocalDeployment) -> tuple[str, Path | None]:
    """Wait until the run has finished: the log stream ends or the run folder appears (then
    ask the SuperLink for the status), checking now and then in any case."""
    deadline = time.monotonic() + opts.timeout
    next_ask = time.monotonic() + 15
    streaming = True
    status = ""
    while True:
        time.sleep(0.5)
        if not superlink.alive():
            raise DeployError(f"the SuperLink exited with status {superlink.proc.returncode}:\n"
                              f"{tail(superlink.log_path)}")
        run_dir = _new_run_folder(out_dir, before, name)
        ended = streaming and not logs.alive()  # each `flwr list` costs a CLI start: ask when it may help
        if run_dir is not None or ended or time.monotonic() > next_ask:
            streaming = logs.alive()
            next_ask = time.monotonic() + (15 if streaming else 5)
            status = cli.status(run_id)
            if status.startswith("finished"):
                for _ in range(20):  # the folder is renamed just before the ServerApp returns
                    run_dir = run_dir or _new_run_folder(out_dir, before, name)
                    if run_dir is not None:
                        break
                    time.sleep(0.5)
                return status, run_dir
        if time.monotonic() > deadline:
            raise DeployError(f"run {run_id} still {status or 'unknown'!r} after {opts.timeout:.0f} s (--timeout)")
