"""Run a scenario on Flower's simulation engine (Ray backend) and write its run folder."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from fedsim import extractors
from fedsim.config import Scenario, ScenarioError
from fedsim.data import load_dataset
from fedsim.report.results import RunFolder
from fedsim.report.document import build_report
from fedsim.report.run_plots import draw_run_plots

log = logging.getLogger(__name__)


def preflight(scenario: Scenario) -> None:
    """Fail before any Ray start-up when the data is missing; download data and weights
    once here (not in every client at the same time) when asked to."""
    d, ex = scenario.data, scenario.extractor
    for split in ("train", "test"):
        load_dataset(d.dataset, d.root or None, split, download=d.download)
    if ex.download and extractors.resolve_weights(ex.name, ex.weights, download=True) is None:
        extractors.create(ex.name, weights=ex.weights, download=True)  # fetch the release once, here
    check_anonymizers_fit_data(scenario)
    if scenario.online.rounds:
        from fedsim.online.client import check_rounds

        try:
            check_rounds(scenario)
        except ValueError as err:
            raise ScenarioError(str(err)) from None


def check_anonymizers_fit_data(scenario: Scenario) -> None:
    """Data-dependent parameter checks (k or n_clusters above a client's size, n_components
    above the embedding size) before any work, on the smallest client's partition."""
    from fedsim import anonymizers
    from fedsim.clients.release import scenario_indices

    parts, _ = scenario_indices(scenario, scenario.federation.num_clients)
    n_min = min(len(p) for p in parts)
    if scenario.online.rounds:  # each round anonymizes one batch
        n_min = min(n_min, *scenario.online.batch_sizes())
    dim = extractors.REGISTRY.create(scenario.extractor.name).embedding_dim
    for method, params in scenario.anonymizer_grid():
        try:
            anonymizers.create(method, **params).check_data(n_min, dim)
        except ValueError as err:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ScenarioError(f"anonymizers.{method}{f' ({shown})' if shown else ''}: {err} "
                                f"(smallest client: {n_min} records of dimension {dim})") from None


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


def run_scenario(scenario: Scenario, output_dir: str | Path | None = None) -> Path:
    """Run one scenario end to end; returns the finished run folder."""
    from flwr.simulation import run_simulation

    from fedsim.clients import make_client_app
    from fedsim.strategies import make_server_app

    preflight(scenario)
    out = Path(output_dir or scenario.output_dir)
    resolved = scenario.to_dict()
    with RunFolder(out, scenario.name, resolved) as folder:
        log.info("scenario %s: %d clients, dataset %s, extractor %s, seed %d", scenario.name,
                 scenario.federation.num_clients, scenario.data.dataset, scenario.extractor.name, scenario.seed)
        t0 = time.perf_counter()
        run_simulation(
            server_app=make_server_app(resolved, run_dir=folder.path),
            client_app=make_client_app(resolved),
            num_supernodes=scenario.federation.num_clients,
            backend_config=backend_config(scenario),
        )
        results_path = folder.path / "results.json"
        if not results_path.is_file():
            raise RuntimeError("the simulation ended without results (see log.txt)")
        results = json.loads(results_path.read_text())
        log.info("simulation finished in %.1fs; global accuracy %s", time.perf_counter() - t0, results["accuracy"])
        if draw_run_plots(scenario, folder.path):
            build_report(folder.path)  # again, now with the embedding figures
    return folder.final_path
