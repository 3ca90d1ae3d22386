"""Flower ServerApp: for every anonymizer configuration, ask each client for its release,
pool, fit the classifiers, score every client's queries; then write the results.

``make_server_app(scenario, run_dir)`` is used by :mod:`fedsim.simulation`; the
module-level ``app`` serves ``flwr run .`` and writes its own run folder.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsim import anonymizers
from fedsim.config import Scenario, scenario_for_run
from fedsim.report.results import RunFolder, write_json
from fedsim.report.document import build_report
from fedsim.report.online_plots import write_online_plots
from fedsim.report.sweep import write_sweep_outputs
from fedsim.strategies.messaging import ask, collect_records, parse_replies, wait_for_nodes
from fedsim.strategies.pooled import ClientRelease, combine_scores, fit_pooled
from fedsim.strategies.summary import assemble_results, config_label

log = logging.getLogger(__name__)


def _shared_state(grid: Grid, node_ids: list[int], index: int, method: str, params: dict[str, Any],
                  timeout: float) -> tuple[dict[str, np.ndarray] | None, list[dict[str, Any]]]:
    """Federated estimate of a shared transform from the clients' sufficient statistics."""
    if not anonymizers.needs_shared_state(method):
        return None, []
    replies = ask(grid, node_ids, "stats", index, method, params, timeout)
    records, failures = collect_records(replies, node_ids, "stats")
    stats = [{k: v.numpy() for k, v in rec.items()} for rec in records]
    if not stats:
        raise RuntimeError(f"no client could provide statistics for {method}: {failures[0]['error']}")
    return anonymizers.combine_shared_state(method, params, stats), failures


def _evaluate(grid: Grid, node_ids: list[int], index: int, method: str, params: dict[str, Any],
              fitted: dict[str, Any], timeout: float) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """Send the fitted classifiers; each client scores its own queries and returns counts."""
    states = {f"classifier.{name}": clf.get_state() for name, clf in fitted.items()}
    replies = ask(grid, node_ids, "evaluate", index, method, params, timeout, states)
    records, failures = collect_records(replies, node_ids, "scores")
    scores = {int(rec["partition-id"]): {"n": int(rec["n-query"]), "correct": {n: int(rec[f"correct.{n}"]) for n in fitted}}
              for rec in records}
    return scores, failures


def _audit(run_dir: Path, label: str, releases: list[ClientRelease]) -> None:
    """Everything the server received for one configuration, as it arrived."""
    folder = run_dir / "received" / label.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    for r in releases:
        np.savez(folder / f"client-{r.partition_id}.npz", x_train=r.x_train, y_train=r.y_train)


def run_server(grid: Grid, scenario: Scenario, run_dir: Path | None = None) -> dict[str, Any]:
    """All configuration rounds; returns the results.json document."""
    fed = scenario.federation
    t_start = time.perf_counter()
    node_ids = wait_for_nodes(grid, fed.num_clients, timeout=min(fed.round_timeout, 300.0))
    if scenario.online.rounds:
        return _run_online_server(grid, scenario, node_ids, t_start)
    rounds = []
    for index, (method, params) in enumerate(scenario.anonymizer_grid()):
        label = config_label(method, params)
        t0 = time.perf_counter()
        shared, failures = _shared_state(grid, node_ids, index, method, params, fed.round_timeout)
        replies = ask(grid, node_ids, "release", index, method, params, fed.round_timeout,
                       {"shared": shared} if shared is not None else None)
        releases, release_failures = parse_replies(replies, node_ids)
        failures += release_failures
        t_collect = time.perf_counter() - t0
        for f in failures:
            log.error("%s: client %s (node %s) failed: %s", label, f["id"], f["node_id"],
                      f["error"].splitlines()[0] if f["error"] else "")
        if not releases:
            raise RuntimeError(f"{label}: all {len(node_ids)} clients failed; first error: {failures[0]['error']}")
        hits = [r.partition_id for r in releases if r.info["embedding-cache"] == "hit"]
        if index == 0 and hits:
            log.info("clients %s reused cached embeddings (no extraction)", ", ".join(map(str, hits)))
        if scenario.audit.save_received and run_dir is not None:
            _audit(run_dir, label, releases)
        t1 = time.perf_counter()
        if sum(len(r.y_train) for r in releases):
            fitted, fit_s = fit_pooled(releases, scenario.classifiers)
            scores, eval_failures = _evaluate(grid, node_ids, index, method, params, fitted, fed.round_timeout)
            failures += eval_failures
            accuracy, per_client = combine_scores(scores, list(fitted))
        else:  # every client released nothing (e.g. all points DBSCAN noise, dropped): no model
            log.warning("%s: the releases are empty; no classifier can be trained", label)
            fit_s, accuracy, per_client = {}, {n: float("nan") for n in scenario.classifiers}, {}
        clf_timings = {n: {"fit_s": fit_s.get(n, float("nan")), "evaluate_round_s": time.perf_counter() - t1}
                       for n in scenario.classifiers}
        log.info("%s: global accuracy %s", label, {k: round(v, 4) for k, v in accuracy.items()})
        rounds.append({"index": index, "label": label, "method": method, "params": params,
                       "releases": releases, "failures": failures, "accuracy": accuracy,
                       "per_client": per_client, "timings": {"collect_s": t_collect, "classifiers": clf_timings}})
    results = assemble_results(scenario, rounds)
    results["timings"]["server_total_s"] = time.perf_counter() - t_start
    return results


def _run_online_server(grid: Grid, scenario: Scenario, node_ids: list[int], t_start: float) -> dict[str, Any]:
    """Online continual learning: every anonymizer configuration x batch size, round by round."""
    from fedsim.online.server import run_online

    rounds = []
    sizes = scenario.online.batch_sizes()
    for method, params in scenario.anonymizer_grid():
        for batch_size in sizes:
            index = len(rounds)
            label = config_label(method, params) + (f" [batch {batch_size}]" if len(sizes) > 1 else "")
            rounds.append(run_online(grid, scenario, node_ids, index, method, params, batch_size, label))
            log.info("%s: average accuracy %s", label, {k: round(v, 4) for k, v in rounds[-1]["accuracy"].items()})
    results = assemble_results(scenario, rounds)
    results["online"] = [r["online"] for r in rounds]
    results["timings"]["server_total_s"] = time.perf_counter() - t_start
    return results


def _finish(run_dir: Path, results: dict[str, Any]) -> None:
    write_json(run_dir / "results.json", results)
    write_sweep_outputs(run_dir, results)
    write_online_plots(run_dir, results)
    build_report(run_dir)


def make_server_app(scenario: dict[str, Any] | None = None, run_dir: str | Path | None = None) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        resolved = scenario_for_run(scenario, context.run_config)
        if run_dir is not None:
            _finish(Path(run_dir), run_server(grid, resolved, Path(run_dir)))
            return
        # flwr run: no launcher around us, so this app owns the run folder.
        out = Path(str(context.run_config.get("output-dir", resolved.output_dir))).resolve()
        with RunFolder(out, resolved.name, resolved.to_dict()) as folder:
            results = run_server(grid, resolved, folder.path)
            results["engine"] = "flwr-run"
            _finish(folder.path, results)
        log.info("results written to %s", folder.final_path)

    return app


app = make_server_app()
