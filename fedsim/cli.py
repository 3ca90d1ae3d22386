"""The ``fedsim`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fedsim import __version__
from fedsim.logs import setup_console


def _cmd_run(args: argparse.Namespace) -> int:
    from fedsim.config import load_scenario
    from fedsim.report import format_summary
    from fedsim.simulation import run_scenario

    scenario = load_scenario(args.scenario, args.set)
    run_dir = run_scenario(scenario, args.output_dir)
    results = json.loads((run_dir / "results.json").read_text())
    print(format_summary(results))
    print(f"\nresults: {run_dir / 'results.json'}")
    return 0 if results["num_failed"] == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedsim", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fedsim {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario file on Flower's simulation engine")
    run.add_argument("scenario", type=Path, help="scenario TOML file, e.g. scenarios/quickstart.toml")
    run.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                     help="override any scenario key, e.g. --set federation.num_clients=8 partition.method=dirichlet")
    run.add_argument("--output-dir", type=Path, default=None, help="where run folders go (default: the scenario's output_dir)")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_console(args.verbose)
    from fedsim.config import ScenarioError
    from fedsim.data import DatasetError

    try:
        return args.func(args)
    except (ScenarioError, DatasetError) as err:
        print(f"fedsim: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
