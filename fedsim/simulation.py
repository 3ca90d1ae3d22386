"""Run a scenario on Flower's simulation engine (Ray backend) and write its run folder."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from fedsim.config import Scenario
from fedsim.interrupts import run_interruptibly
from fedsim.preflight import preflight
from fedsim.raystart import start_ray
from fedsim.report.output import write_run_outputs
from fedsim.report.results import RunFolder
from fedsim.report.document import build_report
from fedsim.run_plots import draw_run_plots
from fedsim.strategies.federation import FederationError

log = logging.getLogger(__name__)


def backend_config(scenario: Scenario) -> dict[str, Any]:
    """Client resources and ``ray.init`` arguments; GPUs only where CUDA exists."""
    import torch

    res = scenario.federation.client_resources
    num_gpus = res.num_gpus if torch.cuda.is_available() else 0.0
    if res.num_gpus and not num_gpus:
        log.info("no CUDA device: clients run on the CPU (client_resources.num_gpus ignored)")
    address = scenario.federation.ray_address
    init_args: dict[str, Any] = {"address": address, "include_dashboard": False}
    if address == "local":  # Ray refuses resource counts when joining an existing cluster
        init_args["num_cpus"] = max(os.cpu_count() or 1, int(res.num_cpus))
        if torch.cuda.is_available():
            init_args["num_gpus"] = torch.cuda.device_count()
    return {"client_resources": {"num_cpus": res.num_cpus, "num_gpus": num_gpus}, "init_args": init_args}


def messages_in_flight(client_resources: dict[str, float]) -> int:
    """Four messages per client Ray can run at once (``federation.max_in_flight = 0``):
    enough to keep every slot busy, few enough that Flower's in-memory message store does
    not take the clients' CPU (fedsim.strategies.window)."""
    import ray

    slots = ray.cluster_resources().get("CPU", 1.0) / max(client_resources["num_cpus"], 1e-9)
    return max(8, 4 * int(slots))


def run_scenario(scenario: Scenario, output_dir: str | Path | None = None, key: int | None = None) -> Path:
    """Run one scenario end to end; returns the finished run folder.

    ``key`` is the federation key (``--federation-key-file``); by default a fresh random
    one. It is handed to the ClientApp side only: the ServerApp never holds it."""
    from flwr.simulation import run_simulation

    from fedsim.clients import make_client_app
    from fedsim.clients.keys import new_key
    from fedsim.strategies.server_app import ServerOutput, make_server_app

    t_start = time.perf_counter()
    preflight(scenario, output_dir)
    driver = {"preflight_s": time.perf_counter() - t_start}
    key = new_key() if key is None else key
    out = Path(output_dir or scenario.output_dir)
    resolved = scenario.to_dict()
    sink = ServerOutput()
    with RunFolder(out, scenario.name, resolved) as folder:
        log.info("scenario %s: %d clients, dataset %s, extractor %s, seed %d", scenario.name,
                 scenario.federation.num_clients, scenario.data.dataset, scenario.extractor.name, scenario.seed)
        t0 = time.perf_counter()
        try:
            backend = backend_config(scenario)
            start_ray(backend["init_args"])  # from the main thread; workers import this fedsim
            driver["ray_start_s"] = time.perf_counter() - t0
            fed = resolved["federation"]
            fed["max_in_flight"] = fed["max_in_flight"] or messages_in_flight(backend["client_resources"])
            run_interruptibly(
                run_simulation,
                server_app=make_server_app(resolved, sink),
                client_app=make_client_app(resolved, key),
                num_supernodes=scenario.federation.num_clients,
                backend_config=backend,
            )
        finally:
            if sink.results:  # also what a stopped run completed
                driver["simulation_s"] = time.perf_counter() - t0 - driver.get("ray_start_s", 0.0)
                sink.results["timings"].update(driver)
                write_run_outputs(folder.path, sink.results, sink.audit, sink.received)
        if sink.error:
            raise FederationError(sink.error)
        if not sink.results:
            raise RuntimeError("the simulation ended without results (see log.txt)")
        log.info("simulation finished in %.1fs; global accuracy %s", time.perf_counter() - t0,
                 sink.results["accuracy"])
        folder.mark_complete()  # results and report are written: an interrupt now keeps the run
        if draw_run_plots(scenario, folder.path, key):
            build_report(folder.path)  # again, now with the embedding figures
    return folder.final_path
