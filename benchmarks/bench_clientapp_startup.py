"""Per-message start-up of fedsim's ClientApp on Flower's deployment engine.

In deployment (flwr 1.42, default ``--isolation subprocess``) a SuperNode pulls one
message at a time and its SuperExec starts a fresh ``flwr-clientapp`` process for it,
which loads the app, answers that one message and exits; a simulation's Ray actor
instead lives for the whole run.  So in deployment everything a message needs before its
real work is paid again by every message: the interpreter, Flower's runtime, fedsim and
torch imports, the scenario, the model and the embedding-cache look-up.

Each step is timed in fresh processes (median of ``--repeat``; the disk cache is warm, the
embedding cache holds the client's embeddings, as for every message after a node's first):

* ``interpreter``    -- ``python -c pass``;
* ``flwr runtime``   -- + what ``flwr-clientapp`` imports, and the installed-FAB check it
  runs per message (unzip, hash, find the install);
* ``fedsim import``  -- + ``import fedsim.clients.client_app`` (torch among it);
* ``message, before`` -- + the scenario loaded and validated (Flower Datasets' partitioners
  imported) and the client's data set up with its preprocessing built (torchvision
  imported) before the cache look-up: how every message started before issue 15;
* ``message, first`` -- the same today for a node's first message of a run (validation once);
* ``message, later`` -- today's later messages: the scenario from ``context.state``, the
  preprocessing built only on a cache miss;
* ``warm``           -- the same look-up again inside one process (a simulation's actor).

``--end-to-end`` also runs the quickstart on 3 clients with ``fedsim run`` and ``fedsim deploy
local`` (TLS + node authentication) with one federation key, and prints the numbers side by
side (and how many deterministic numbers differ: 0 expected), each configuration's round
time (``collect_s``) on both engines and how many ``flwr-clientapp`` processes the
SuperNodes started for how many messages.

    python benchmarks/bench_clientapp_startup.py [--repeat 5] [--end-to-end] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "quickstart.toml"
OVERRIDES = ["federation.num_clients=3"]

#: one child process: the steps up to ``upto``, each timed; prints JSON
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
upto, scenario_path, overrides, fab = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
out = {}
def mark(name):
    out[name] = time.perf_counter() - t0
import flwr.supernode.runtime.run_clientapp  # what flwr-clientapp imports before the app
if fab:
    from flwr.cli.install import install_from_fab
    install_from_fab(open(fab, "rb").read(), skip_prompt=True)  # per message: verify, find the install
mark("flwr runtime")
if upto != "flwr runtime":
    import fedsim.clients.client_app as ca
    mark("fedsim import")
if upto.startswith("message"):
    from flwr.app import ConfigRecord, Context, RecordDict
    from fedsim.config import load_scenario, to_toml
    scenario = load_scenario(scenario_path, overrides) if upto == "message, before" else None
    path = scenario_path
    node_config = {"partition-id": 0, "num-partitions": 3}
    if upto == "message, before":  # validated every message, preprocessing built before the look-up
        from fedsim.clients.release import client_data, extractor_for
        extractor_for(scenario, 10).transform()
        mark("scenario")
        data = client_data(scenario, 0, 3, progress=False)
    else:
        state = RecordDict()
        if upto == "message, later":
            state[ca.SCENARIO_STATE] = ConfigRecord({"run-id": "1", "resolved": sys.argv[5]})
        context = Context(run_id=1, node_id=1, node_config=node_config, state=state,
                          run_config={"scenario": sys.argv[6]})
        node = ca.Node(context, None, None)
        mark("scenario")
        data = node.data()
    mark("data")
    assert data.embedding_cache == "hit", data.embedding_cache
    t = time.perf_counter()
    (node.data() if upto != "message, before" else client_data(scenario, 0, 3, progress=False))
    out["warm"] = time.perf_counter() - t
out["torch"] = "torch" in sys.modules
out["torchvision"] = "torchvision" in sys.modules
out["flwr_datasets"] = "flwr_datasets" in sys.modules
print(json.dumps(out))
"""

STEPS = ["interpreter", "flwr runtime", "fedsim import", "message, before", "message, first", "message, later"]


def _run_child(step: str, env: dict[str, str], args: list[str]) -> tuple[float, dict]:
    t = time.perf_counter()
    if step == "interpreter":
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
        return time.perf_counter() - t, {}
    done = subprocess.run([sys.executable, "-c", CHILD, step, *args], capture_output=True, text=True, env=env,
                          cwd=REPO)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{step} failed:\n{done.stderr[-3000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def _build_fab(workdir: Path, env: dict[str, str]) -> Path:
    """The app bundle ``flwr run`` would send, installed once (as on a node after its first message)."""
    flwr = Path(sys.executable).parent / "flwr"
    subprocess.run([str(flwr), "build", "--app", str(REPO)], cwd=workdir, env=env, check=True, capture_output=True)
    fab = next(workdir.glob("*.fab"))
    subprocess.run([sys.executable, "-c", "import sys; from flwr.cli.install import install_from_fab; "
                    "install_from_fab(open(sys.argv[1], 'rb').read(), skip_prompt=True)", str(fab)],
                   env=env, check=True, capture_output=True)
    return fab


def micro(repeat: int) -> dict:
    from fedsim.config import load_scenario, to_toml

    scenario = load_scenario(SCENARIO, OVERRIDES)
    with tempfile.TemporaryDirectory(prefix="fedsim-bench-startup-") as tmp:
        work = Path(tmp)
        (work / "scenario.toml").write_text(to_toml(scenario.to_dict()))
        env = {**os.environ, "FEDSIM_CACHE_DIR": str(work / "cache"), "FLWR_HOME": str(work / "flwr-home"),
               "OMP_NUM_THREADS": "1"}
        try:
            fab = str(_build_fab(work, env))
        except (subprocess.CalledProcessError, StopIteration) as err:
            print(f"flwr build failed ({err}); the FAB check is left out", file=sys.stderr)
            fab = ""
        args = [str(SCENARIO), json.dumps(OVERRIDES), fab, json.dumps(scenario.to_dict()), str(work / "scenario.toml")]
        # fill the embedding cache (the node's first message extracts; not timed)
        subprocess.run([sys.executable, "-c", "import sys, json; from fedsim.config import load_scenario; "
                        "from fedsim.clients.release import client_data; "
                        "client_data(load_scenario(sys.argv[1], json.loads(sys.argv[2])), 0, 3, progress=False)",
                        str(SCENARIO), json.dumps(OVERRIDES)], env=env, check=True, cwd=REPO, capture_output=True)
        rows = {}
        for step in STEPS:
            runs = [_run_child(step, env, args) for _ in range(repeat)]
            walls = [w for w, _ in runs]
            inner = runs[-1][1]
            rows[step] = {"wall_s": statistics.median(walls), "min_s": min(walls),
                          "warm_s": statistics.median([r.get("warm", 0.0) for _, r in runs]) if "warm" in inner else None,
                          **{k: inner[k] for k in ("torch", "torchvision", "flwr_datasets") if k in inner}}
            print(f"{step:18s} {rows[step]['wall_s']:6.2f} s (min {rows[step]['min_s']:.2f})", file=sys.stderr)
    return rows


METRICS = ("reidentification_rate", "mia_auc", "inversion_cosine", "near_overlap")


def end_to_end() -> dict:
    """The quickstart on 3 clients on both engines, with one federation key: round times, the
    numbers side by side, and how many ClientApp processes the SuperNodes started."""
    from fedsim.clients.keys import write_key_file
    from fedsim.report.equality import differences

    with tempfile.TemporaryDirectory(prefix="fedsim-bench-e2e-") as tmp:
        work = Path(tmp)
        key = work / "federation.key"
        write_key_file(key)
        env = {**os.environ, "FEDSIM_CACHE_DIR": str(work / "cache")}
        sets = ["--set", "plots.embeddings=off", "--federation-key-file", str(key)]
        out: dict = {}
        for engine, cmd in (("simulation", ["run", str(SCENARIO), "--set", *OVERRIDES]),
                            ("deployment", ["deploy", "local", "--clients", "3", str(SCENARIO), "--quiet", "--keep"])):
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "fedsim", *cmd, *sets, "--output-dir", str(work / engine)],
                                  capture_output=True, text=True, env=env, cwd=REPO)
            wall = time.perf_counter() - t
            found = re.findall(r"^results: (.+)$", done.stdout, flags=re.M)
            if not found:
                raise RuntimeError(f"{engine} failed:\n{done.stderr[-3000:]}")
            results = json.loads(Path(found[-1]).read_text())
            out[engine] = {
                "wall_s": wall, "results": results,
                "collect_s": [r["timings"]["collect_s"] for r in results["releases"]],
                "client_work_s": [max(sum(c["timings"].get(k, 0.0) for k in ("extract_s", "anonymize_s", "measure_s"))
                                      for c in r["clients"]) for r in results["releases"]],
                "numbers": {r["label"]: {"knn": r["accuracy"]["knn"], **{m: r["privacy"].get(m) for m in METRICS}}
                            for r in results["releases"]},
            }
            kept = re.search(r"deployment folder kept: (\S+)", done.stderr)
            if kept:
                logs = Path(kept.group(1)) / "logs"
                texts = [p.read_text(errors="replace") for p in logs.glob("supernode-*.log")]
                out[engine]["clientapp_processes"] = sum(t.count("Start `flwr-clientapp` process") for t in texts)
                out[engine]["messages"] = sum(t.count("Receiving: ") for t in texts)
                subprocess.run(["rm", "-rf", kept.group(1)], check=False)
        out["differences"] = differences(out["simulation"].pop("results"), out["deployment"].pop("results"))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--end-to-end", action="store_true", help="also time both engines on a small scenario")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = micro(args.repeat)
    report = {"steps": rows}
    print(f"\nper-message start-up (fresh process, median of {args.repeat}; embedding cache hit)")
    print(f"{'step':18s} {'wall s':>7s}  torch  torchvision  flwr_datasets")
    for step, r in rows.items():
        flags = "  ".join(f"{'yes' if r.get(k) else 'no':>{w}s}" for k, w in
                          (("torch", 5), ("torchvision", 11), ("flwr_datasets", 13))) if "torch" in r else ""
        print(f"{step:18s} {r['wall_s']:7.2f}  {flags}")
    later, before = rows["message, later"], rows["message, before"]
    print(f"warm (same process, second look-up): {later['warm_s']:.3f} s; cut per later message: "
          f"{before['wall_s'] - later['wall_s']:.2f} s")
    if args.end_to_end:
        e2e = report["end_to_end"] = end_to_end()
        print("\nquickstart, 3 clients, one federation key: simulation | deployment (TLS + node auth)")
        print(f"{'configuration':42s} {'metric':22s} {'simulation':>12s} {'deployment':>12s}")
        for label, sim in e2e["simulation"]["numbers"].items():
            dep = e2e["deployment"]["numbers"][label]
            for metric, value in sim.items():
                print(f"{label:42s} {metric:22s} {value:12.6f} {dep[metric]:12.6f}")
        print(f"deterministic numbers that differ: {len(e2e['differences'])}")
        for engine in ("simulation", "deployment"):
            r = e2e[engine]
            extra = (f", {r['clientapp_processes']} flwr-clientapp processes for {r['messages']} messages"
                     if "messages" in r else "")
            print(f"{engine:10s} total {r['wall_s']:6.1f} s; per configuration collect_s "
                  f"{', '.join(f'{c:.1f}' for c in r['collect_s'])} (slowest client's own work "
                  f"{', '.join(f'{c:.1f}' for c in r['client_work_s'])}){extra}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
