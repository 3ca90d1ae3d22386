"""Federation at scale: 4 to 1,000 simulated clients over the same data, wall time by phase
and peak memory of the whole simulation (the driver plus every Ray process).

Each point is one ``fedsim run scenarios/federated_1000_clients.toml --set
federation.num_clients=N`` in its own process (one Gaussian-noise configuration, per-client
privacy measurement, a kNN on the server), with the embedding cache warm: both splits are
embedded whole once (``fedsim.clients.release.embed_splits``) and every client reads its
share from there, so no point pays for extraction. A sampler reads ``/proc`` every
``--interval`` seconds and sums the resident (RSS) and proportional (PSS: shared pages
split between their users) set sizes of the run's process tree; the peak of each sum is
reported, with the largest single Ray worker.

Phases (seconds, from results.json and the wall clock): ``preflight`` (scenario, data and
partition checks), ``ray`` (Ray start), ``clients`` (from the server sending the round's
requests to holding every reply: each client's loading, anonymization and privacy
measurement, run ``num_cpus`` at a time), ``aggregate`` (classifier fit), ``evaluate``
(scoring every client's queries), ``flower`` (the rest of the simulation: ServerApp and
actor start-up and shut-down), ``output`` (results, report and plots) and ``startup``
(Python and imports).

Baseline, in the same run: the largest point again with every message of a round pushed
at once (Flower's own behaviour; fedsim keeps a window of them in flight).

    python benchmarks/bench_federation.py [--clients 4,16,64,256,1000] [--data mini,jpeg]
        [--imagefolder ../shared/datasets/cifar10-jpg] [--no-baseline] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "federated_1000_clients.toml"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def _tree(root: int) -> list[int]:
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _memory_mb(pid: int) -> tuple[float, float, str]:
    """(RSS, PSS) in MB and the command name of one process; zeros when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            fields = {line.split(":")[0]: line.split()[1] for line in fh if ":" in line}
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            name = fh.read().split(b"\0")[0].decode(errors="replace")
        return int(fields.get("Rss", 0)) / 1024, int(fields.get("Pss", 0)) / 1024, name
    except (OSError, ValueError):
        return 0.0, 0.0, ""


class Sampler(threading.Thread):
    """Peak summed RSS/PSS of a process tree, and the largest Ray worker, while it runs."""

    def __init__(self, root: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_rss = self.peak_pss = self.peak_worker = self.driver = 0.0
        self.max_processes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss_sum = pss_sum = 0.0
            pids = _tree(self.root)
            for pid in pids:
                rss, pss, name = _memory_mb(pid)
                rss_sum, pss_sum = rss_sum + rss, pss_sum + pss
                if pid == self.root:
                    self.driver = max(self.driver, rss)
                elif "ray::" in name or "default_worker" in name:
                    self.peak_worker = max(self.peak_worker, rss)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss_sum), max(self.peak_pss, pss_sum)
            self.max_processes = max(self.max_processes, len(pids))
            self.stop.wait(self.interval)


WARM = r"""
import sys
from fedsim.config import load_scenario
from fedsim.clients.release import embed_splits
embed_splits(load_scenario(sys.argv[1], sys.argv[2:]))
"""


def run_point(clients: int, data: list[str], out: Path, interval: float) -> dict:
    overrides = [f"federation.num_clients={clients}", *data]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fedsim", "run", str(SCENARIO), "--output-dir", str(out),
                             "--set", *overrides], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid, interval)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{clients} clients: fedsim run failed ({proc.returncode}):\n{stderr[-3000:]}")
    results_path = Path(stdout.strip().splitlines()[-1].split("results: ")[1])
    res = json.loads(results_path.read_text())
    t, rel = res["timings"], res["releases"][0]
    fit = sum(c["fit_s"] for c in rel["timings"]["classifiers"].values())
    evaluate = max(c["evaluate_round_s"] for c in rel["timings"]["classifiers"].values())
    server_other = t["server_total_s"] - t["collect_s"] - fit - evaluate
    phases = {"preflight": t["preflight_s"], "ray": t["ray_start_s"], "clients": t["collect_s"], "aggregate": fit,
              "evaluate": evaluate, "flower": t["simulation_s"] - t["server_total_s"] + server_other}
    sim_end = t["preflight_s"] + t["ray_start_s"] + t["simulation_s"]
    phases["output_and_startup"] = wall - sim_end
    extract = sum(c["timings"]["extract_s"] for c in res["clients"])
    return {"clients": clients, "wall_s": wall, "phases_s": phases, "client_extract_s_sum": extract,
            "cache_hits": sum(c["embedding_cache"] == "hit" for c in res["clients"]),
            "accuracy": rel["accuracy"], "peak_rss_mb": sampler.peak_rss, "peak_pss_mb": sampler.peak_pss,
            "driver_peak_rss_mb": sampler.driver, "largest_worker_rss_mb": sampler.peak_worker,
            "processes": sampler.max_processes}


def table(rows: list[dict]) -> str:
    base = rows[0]
    lines = ["| clients | wall s | x 4 clients | preflight | Ray start | clients | aggregate | evaluate | flower | "
             "output + start-up | peak RSS MB (sum) | peak PSS MB (sum) | x 4 clients (PSS) | largest worker MB |",
             "|" + "---|" * 14]
    for r in rows:
        p = r["phases_s"]
        lines.append(f"| {r.get('label', r['clients'])} | {r['wall_s']:.1f} | {r['wall_s'] / base['wall_s']:.2f}x | "
                     f"{p['preflight']:.1f} | {p['ray']:.1f} | {p['clients']:.1f} | {p['aggregate']:.2f} | "
                     f"{p['evaluate']:.2f} | {p['flower']:.1f} | {p['output_and_startup']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['peak_pss_mb']:.0f} | {r['peak_pss_mb'] / base['peak_pss_mb']:.2f}x | "
                     f"{r['largest_worker_rss_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="4,16,64,256,1000")
    ap.add_argument("--data", default="mini,jpeg", help="mini (the shipped cifar10-mini) and/or jpeg")
    ap.add_argument("--imagefolder", default=str(REPO.parent / "shared/datasets/cifar10-jpg"))
    ap.add_argument("--interval", type=float, default=0.25, help="memory sampling period, seconds")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the baseline: the largest point again with every message in flight at once "
                         "(Flower's own behaviour, federation.max_in_flight = 1000000)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    sets = {"mini": ["data.dataset='cifar10-mini'"],
            "jpeg": ["data.dataset='imagefolder'", f"data.root='{args.imagefolder}'"]}
    wanted = [d for d in args.data.split(",") if d != "jpeg" or Path(args.imagefolder).is_dir()]
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "python": platform.python_version(), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="fedsim-bench-fed-") as tmp:
        for name in wanted:
            subprocess.run([sys.executable, "-c", WARM, str(SCENARIO), *sets[name]], check=True)
            rows = []
            for n in [int(c) for c in args.clients.split(",")]:
                rows.append(run_point(n, sets[name], Path(tmp) / name, args.interval))
                r = rows[-1]
                print(f"{name} {n:>5} clients: {r['wall_s']:.1f} s, peak PSS {r['peak_pss_mb']:.0f} MB "
                      f"(RSS {r['peak_rss_mb']:.0f}), phases {({k: round(v, 1) for k, v in r['phases_s'].items()})}",
                      flush=True)
            if not args.no_baseline:
                base = run_point(rows[-1]["clients"], [*sets[name], "federation.max_in_flight=1000000"],
                                 Path(tmp) / name, args.interval)
                base["label"] = f"{base['clients']}, all in flight"
                rows.append(base)
                print(f"{name} baseline (all in flight): {base['wall_s']:.1f} s", flush=True)
            report["runs"][name] = rows
            print(f"\n{name}:\n{table(rows)}\n", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
