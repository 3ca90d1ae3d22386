"""Flower ServerApp: a thin loop that runs the scenario's strategies (``fedsim.strategies``;
several run in order on one federation) once per configuration with Flower's own
``Strategy.start``, on an audited grid, and returns the results.

``make_server_app(scenario, sink)`` is used by the simulation driver, which writes the run
folder from what lands in ``sink``; the module-level ``app`` serves ``flwr run .``, where no
driver exists, so it writes its own run folder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedsim.config import Scenario, scenario_for_run
from fedsim.report.output import write_run_outputs
from fedsim.report.results import RunFolder
from fedsim.strategies import STRATEGIES, strategy_names
from fedsim.strategies.audit import AuditedGrid, AuditLog
from fedsim.strategies.federation import Federation, FederationError, wait_for_nodes
from fedsim.strategies.participation import Participation
from fedsim.strategies.summary import assemble_results
from fedsim.strategies.window import WindowedGrid

log = logging.getLogger(__name__)


@dataclass
class ServerOutput:
    """What a run produced: results.json, the audit records and (on request) received arrays."""

    results: dict[str, Any] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    received: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    error: str = ""


def run_server(grid: Grid, scenario: Scenario, out: ServerOutput) -> ServerOutput:
    """Every configuration of the scenario's flow; fills ``out`` (also when the run stops early)."""
    fd = scenario.federation
    t_start = time.perf_counter()
    audit = AuditLog(keep_arrays=scenario.audit.save_received)
    audited = AuditedGrid(WindowedGrid(grid, fd.max_in_flight) if fd.max_in_flight else grid, audit)
    participation = (Participation(fd.participation, scenario.seed, fd.round_timeout)
                     if fd.participation.enabled() else None)
    fed = Federation(wait_for_nodes(grid, fd.num_clients, timeout=min(fd.round_timeout, 300.0)),
                     fd.quorum(), fd.round_timeout, participation)
    # every configuration of every flow, with one index across the run (results, audit, client state)
    plan = [(flow, *entry) for flow in map(STRATEGIES.get, strategy_names(scenario)) for entry in flow.plan(scenario)]
    rounds = []
    try:
        if participation is not None or fd.secure_aggregation.enabled:
            fed.introduce(audited)
        for index, (flow, method, params, label, extra) in enumerate(plan):
            strategy = flow(fed, scenario, index, method, params, label=label, **extra)
            strategy.start(audited, ArrayRecord(), num_rounds=strategy.num_rounds, timeout=fd.round_timeout)
            rounds.append(strategy.result())
            log.info("%s: accuracy %s", label, {k: round(v, 4) for k, v in rounds[-1]["accuracy"].items()})
    except FederationError as err:
        out.error = str(err)
        raise
    finally:
        out.results = assemble_results(scenario, rounds, fed.failures, fd.num_clients)
        if rounds and "online" in rounds[0]:
            out.results["online"] = [r["online"] for r in rounds]
        out.results["traffic"] = audit.traffic(fed.pid_of)
        out.results["timings"]["server_total_s"] = time.perf_counter() - t_start
        if out.error:
            out.results["stopped"] = out.error
        out.audit = audit.with_clients(fed.pid_of) if scenario.audit.messages else []
        out.received = [({**e, "client": fed.pid_of.get(e["node"])}, arrays) for e, arrays in audit.arrays]
    return out


def make_server_app(scenario: dict[str, Any] | None = None, sink: ServerOutput | None = None) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        resolved = scenario_for_run(scenario, context.run_config)
        if sink is not None:
            run_server(grid, resolved, sink)
            return
        # flwr run: no driver around us, so this app owns the run folder.
        out_dir = Path(str(context.run_config.get("output-dir", resolved.output_dir))).resolve()
        output = ServerOutput()
        with RunFolder(out_dir, resolved.name, resolved.to_dict()) as folder:
            try:
                run_server(grid, resolved, output)
            finally:
                output.results["engine"] = "flwr-run"
                write_run_outputs(folder.path, output.results, output.audit, output.received)
            folder.mark_complete()
        log.info("results written to %s", folder.final_path)

    return app


app = make_server_app()
