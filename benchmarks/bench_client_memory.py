"""Peak memory of one client process: partition, decode and embed one client's share.

Each data set runs in a fresh subprocess (its own peak RSS, an empty embedding cache):
it calls ``fedsim.clients.release.client_data`` for the given partitions of an IID split
into ``--clients`` parts, as a Ray actor does, and reports the RSS after the imports, the
peak RSS (VmHWM) and the RSS when done.  A client's memory should follow its own share,
not the data set.  First another process runs the driver's part of ``fedsim run`` (the
preflight: it stores the data set's array file and the partitions in the cache folder),
as in a real run; ``--cold`` skips that, so the client does it itself.

    python benchmarks/bench_client_memory.py [--clients 100] [--partitions 0] [--cold] \
        [--imagefolder ../shared/datasets/cifar10-jpg] [--cifar10 DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
from fedsim.clients.release import client_data
from fedsim.config import from_dict
scenario = from_dict(json.loads(sys.argv[1]))  # resolved by the driver, as a Ray actor gets it
clients, pids = scenario.federation.num_clients, [int(p) for p in sys.argv[2].split(",")]
dataset = scenario.data.dataset
after_imports = rss("VmRSS")
t = time.perf_counter()
n = [client_data(scenario, pid, clients, progress=False).n_train for pid in pids]
print(json.dumps({"dataset": dataset, "n_train": n, "seconds": time.perf_counter() - t,
                  "rss_after_imports_mb": after_imports, "peak_rss_mb": rss("VmHWM"), "rss_end_mb": rss("VmRSS")}))
"""


PREFLIGHT = r"""
import sys
from fedsim.config import load_scenario
from fedsim.preflight import check_partition
dataset, root, clients = sys.argv[1], sys.argv[2], int(sys.argv[3])
overrides = [f"data.dataset={dataset!r}", f"data.root={root!r}", f"federation.num_clients={clients}"]
check_partition(load_scenario(None, overrides))
"""


def measure(dataset: str, root: str, clients: int, partitions: str, cold: bool) -> dict:
    from fedsim.config import load_scenario

    scenario = load_scenario(None, [f"data.dataset={dataset!r}", f"data.root={root!r}",
                                    f"federation.num_clients={clients}"])
    with tempfile.TemporaryDirectory(prefix="fedsim-bench-cache-") as cache:
        env = {**os.environ, "FEDSIM_CACHE_DIR": cache}
        if not cold:
            subprocess.run([sys.executable, "-c", PREFLIGHT, dataset, root, str(clients)], check=True, env=env,
                           capture_output=True)
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(scenario.to_dict()), partitions],
                             capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--partitions", default="0", help="comma-separated partition ids served in turn")
    ap.add_argument("--imagefolder", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpg"))
    ap.add_argument("--cifar10", default="", help="a folder holding cifar-10-batches-py (torchvision format)")
    ap.add_argument("--cold", action="store_true", help="no preflight first: the client stores what it needs")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    runs = [("cifar10-mini", "")]
    if Path(args.imagefolder).is_dir():
        runs.append(("imagefolder", args.imagefolder))
    if args.cifar10:
        runs.append(("cifar10", args.cifar10))
    rows = [measure(name, root, args.clients, args.partitions, args.cold) for name, root in runs]
    print(f"{'dataset':<14}{'train imgs':>12}{'after imports':>15}{'peak RSS':>10}{'end RSS':>10}{'seconds':>9}")
    for r in rows:
        print(f"{r['dataset']:<14}{sum(r['n_train']):>12}{r['rss_after_imports_mb']:>13.0f}MB"
              f"{r['peak_rss_mb']:>8.0f}MB{r['rss_end_mb']:>8.0f}MB{r['seconds']:>9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
