"""The ``fedsim`` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from fedsim import __version__
from fedsim.logs import setup_console


class UsageError(ValueError):
    """A bad command-line value; reported as one line."""


def _cmd_run(args: argparse.Namespace) -> int:
    from fedsim.config import load_scenario
    from fedsim.simulation import run_scenario

    overrides = list(args.set) + (["audit.messages=true"] if args.audit else [])
    scenario = load_scenario(args.scenario, overrides)
    key = None
    if args.federation_key_file is not None:
        from fedsim.clients.keys import read_key_file

        try:
            key = read_key_file(args.federation_key_file)
        except ValueError as err:
            raise UsageError(f"--federation-key-file: {err}") from None
    from fedsim.strategies.federation import FederationError

    try:
        run_dir = run_scenario(scenario, args.output_dir, key=key)
    except FederationError as err:
        print(f"fedsim: run stopped: {err} (completed configurations are in the -failed run folder)",
              file=sys.stderr)
        return 1
    return _print_run(run_dir)


def _print_run(run_dir: Path) -> int:
    """The summary tables of a finished run; exit status 1 when a client failed."""
    from fedsim.report import format_online, format_releases, format_summary

    results = json.loads((run_dir / "results.json").read_text())
    print(format_summary(results))
    if results.get("online"):
        print(f"\nOnline rounds ({results['online'][0]['setting']}; ACC = mean accuracy of the final model over "
              "all test domains, see README):")
        print(format_online(results))
    elif len(results.get("releases", [])) > 1:
        print("\nGlobal accuracy, accuracy loss vs none, and attacks (client mean) per configuration:")
        print(format_releases(results))
    print(f"\nresults: {run_dir / 'results.json'}")
    return 0 if results["num_failed"] == 0 else 1


def _node_config_arg(text: str | None) -> dict:
    """``--node-config`` parsed exactly as flower-supernode parses it (TOML values, or a .toml file)."""
    if not text:
        return {}
    from flwr.common.config import parse_config_args

    try:
        return dict(parse_config_args([text]))
    except Exception as err:  # click's exception or a TOML error: one line either way
        raise UsageError(f"--node-config {text!r}: {getattr(err, 'message', err)}") from None


def _cmd_deploy_local(args: argparse.Namespace) -> int:
    from fedsim.clients.node_config import NodeConfigError
    from fedsim.config import ScenarioError
    from fedsim.deploy.flwr_cli import DeployError
    from fedsim.deploy.local import LocalDeployment, run_local

    opts = LocalDeployment(
        scenario_path=args.scenario, overrides=list(args.set), clients=args.clients, output_dir=args.output_dir,
        secure=not args.insecure, key_file=args.federation_key_file, node_config=_node_config_arg(args.node_config),
        app_dir=args.app, timeout=args.timeout, keep_workdir=args.keep, echo=not args.quiet)
    try:
        result = run_local(opts)
    except NodeConfigError as err:
        raise UsageError(f"--node-config: {err}") from None
    except ValueError as err:  # --clients, --federation-key-file (a ScenarioError is reported by main)
        if isinstance(err, ScenarioError):
            raise
        raise UsageError(str(err)) from None
    except DeployError as err:
        print(f"fedsim: deployment failed: {err}", file=sys.stderr)
        return 1
    if result.status != "finished:completed":
        print(f"fedsim: run {result.run_id} ended {result.status}; run folder {result.run_dir}", file=sys.stderr)
        return 1
    return _print_run(result.run_dir)


def _cmd_deploy_certs(args: argparse.Namespace) -> int:
    from fedsim.deploy.certs import write_certificates

    try:
        certs = write_certificates(args.out, hosts=args.host or ("127.0.0.1", "localhost"), days=args.days)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(f"CA certificate (give it to every party): {certs.ca}\n"
          f"SuperLink certificate and key (keep on the SuperLink): {certs.cert} {certs.key}")
    return 0


def _cmd_deploy_keys(args: argparse.Namespace) -> int:
    from fedsim.deploy.nodeauth import write_node_keys

    try:
        keys = write_node_keys(args.out, args.name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(f"private key (keep on this SuperNode): {keys.private}\n"
          f"public key (send to the SuperLink's operator for flwr supernode register): {keys.public}")
    return 0


def _cmd_deploy_check_node(args: argparse.Namespace) -> int:
    from fedsim.clients.node_config import NodeConfigError, parse_node_config

    try:
        node = parse_node_config(_node_config_arg(args.node_config))
    except NodeConfigError as err:
        raise UsageError(str(err)) from None
    print(f"node config ok: client {node.partition_id} of {node.num_partitions}")
    return 0


def _cmd_train_extractor(args: argparse.Namespace) -> int:
    import dataclasses

    from fedsim.extractors.checkpoint import export_weights
    from fedsim.extractors.train import TrainConfig, train_extractor

    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"recipe"}
    try:
        cfg = TrainConfig.from_recipe(args.recipe, **{k: getattr(args, k) for k in fields})
    except ValueError as err:
        raise UsageError(str(err)) from None
    final = train_extractor(cfg, args.out, resume=args.resume)
    last = final["history"][-1]
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in last.items()}))
    print(f"checkpoint: {args.out / 'final.pt'}  (weights sha256 {final['weights_sha256'][:16]})")
    if args.export:
        digest = export_weights(final, args.export, half=True)
        print(f"exported fp16 weights: {args.export}  (sha256 {digest[:16]})")
    return 0


def _cmd_evaluate_extractor(args: argparse.Namespace) -> int:
    from fedsim.extractors.evaluate import evaluate_extractor

    try:
        result = evaluate_extractor(
            args.model, args.weights, args.dataset, args.root, args.download, k=args.k, metric=args.metric,
            batch_size=args.batch_size, num_workers=args.num_workers, device=args.device, amp=args.amp,
            tta=args.tta, cache=not args.no_cache, plots_dir=args.plots, plot_method=args.plot_method, seed=args.seed,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']} ({result['weights_id']}) on {result['dataset']}: "
          f"{result['n_train']} train / {result['n_test']} test images, {result['precision']}")
    print(f"  test accuracy (flip TTA) {result['test_accuracy']:.4f}   without TTA {result['test_accuracy_no_tta']:.4f}"
          f"   multi-crop TTA {result['test_accuracy_multicrop']:.4f}")
    print(f"  {result['k']}-NN accuracy ({result['metric']}, embedding TTA {result['embedding_tta']}) "
          f"{result['knn_accuracy']:.4f}")
    for p in result.get("plots", []):
        print(f"  plot: {p}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from fedsim.report.document import build_report

    try:
        md, page = build_report(args.run_dir)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    print(f"report: {page}\nmarkdown: {md}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    import time

    from fedsim.report.compare import compare

    out = args.out or Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        written = compare(args.run_dirs, out)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    print(f"compared {len(args.run_dirs)} runs: {out / 'compare.md'} ({len(written) - 2} plots)")
    return 0


def _add_config_flags(parser: argparse.ArgumentParser, config_cls: type, skip: set[str]) -> None:
    """One --flag per dataclass field (default None: the recipe's value applies)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = hints[f.name]
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
            continue
        base = next((t for t in typing.get_args(tp) if t is not type(None)), tp)
        parser.add_argument(flag, type=base, default=None, metavar=f.name.upper(),
                            help=f"default: from the recipe ({f.default!r} in 'study')")


def _add_deploy_parser(sub: argparse._SubParsersAction) -> None:
    deploy = sub.add_parser("deploy", help="Flower's deployment engine: SuperLink + SuperNodes (README: Run across "
                                           "machines)")
    dsub = deploy.add_subparsers(dest="deploy_command", required=True)
    local = dsub.add_parser("local", help="a SuperLink and N SuperNodes on this machine (loopback) run a scenario "
                                          "with flwr run; writes the usual run folder")
    local.add_argument("scenario", type=Path, help="scenario TOML file, e.g. scenarios/quickstart.toml")
    local.add_argument("--clients", type=int, default=None, metavar="N",
                       help="SuperNodes to start (sets federation.num_clients; default: the scenario's)")
    local.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="override any scenario key, as in fedsim run")
    local.add_argument("--output-dir", type=Path, default=None, help="where run folders go (default: the "
                                                                     "scenario's output_dir)")
    local.add_argument("--insecure", action="store_true",
                       help="plain HTTP, no SuperNode authentication (default: TLS + node authentication)")
    local.add_argument("--federation-key-file", type=Path, default=None, metavar="FILE",
                       help="the clients' federation key (default: a fresh one); given to the SuperNodes only")
    local.add_argument("--node-config", default=None, metavar="'KEY=VALUE ...'",
                       help="extra node config for every SuperNode, e.g. \"data-root='/data/cifar'\" "
                            "(README: node config keys)")
    local.add_argument("--app", type=Path, default=None, metavar="DIR",
                       help="the Flower app folder (default: this fedsim's source checkout)")
    local.add_argument("--timeout", type=float, default=1800.0, metavar="S", help="give up after S seconds")
    local.add_argument("--keep", action="store_true", help="keep the temporary folder (certificates, keys, logs)")
    local.add_argument("--quiet", action="store_true", help="do not stream the ServerApp's log")
    local.set_defaults(func=_cmd_deploy_local)

    certs = dsub.add_parser("certs", help="a CA and the SuperLink's TLS certificate (cryptography; no openssl)")
    certs.add_argument("out", type=Path, help="folder for ca.crt, server.pem, server.key")
    certs.add_argument("--host", action="append", default=[], metavar="NAME_OR_IP",
                       help="a name or IP address parties use to reach the SuperLink (repeat; default: 127.0.0.1 "
                            "and localhost)")
    certs.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    certs.set_defaults(func=_cmd_deploy_certs)

    keys = dsub.add_parser("keys", help="a SuperNode's authentication key pair (EC P-384, OpenSSH format)")
    keys.add_argument("out", type=Path, help="folder for NAME and NAME.pub")
    keys.add_argument("--name", default="supernode", help="file name of the private key (default: supernode)")
    keys.set_defaults(func=_cmd_deploy_keys)

    check = dsub.add_parser("check-node", help="check a SuperNode's node config on its machine before starting it")
    check.add_argument("node_config", metavar="'KEY=VALUE ...'", help="the --node-config text (or a .toml file)")
    check.set_defaults(func=_cmd_deploy_check_node)


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
    run.add_argument("--audit", action="store_true",
                     help="record every message that crosses the wire in audit.jsonl (same as [audit] messages = true)")
    run.add_argument("--federation-key-file", type=Path, default=None, metavar="FILE",
                     help="the clients' federation key (one integer) for keyed anonymizers; default: a fresh random "
                          "key per run. Handed to the clients only, never to the server")
    run.set_defaults(func=_cmd_run)

    _add_deploy_parser(sub)

    rep = sub.add_parser("report", help="(re)build report.md and report.html of a run folder")
    rep.add_argument("run_dir", type=Path, help="a run folder, e.g. runs/20260101-120000-quickstart")
    rep.set_defaults(func=_cmd_report)

    cmp_ = sub.add_parser("compare", help="one table and plots across several runs")
    cmp_.add_argument("run_dirs", type=Path, nargs="+", help="run folders to compare")
    cmp_.add_argument("--out", type=Path, default=None, help="output folder (default: runs/compare-<time>)")
    cmp_.set_defaults(func=_cmd_compare)

    from fedsim.extractors.train import RECIPES, TrainConfig

    train = sub.add_parser("train-extractor", help="train a zoo CNN (the original study's step 0)",
                           description="Train a zoo CNN; every option defaults to the chosen recipe's value.")
    train.add_argument("--recipe", choices=list(RECIPES), default="study",
                       help="study: the original study's best recipe; fast: modern fast CIFAR training; "
                            "airbench: whitening stem, dirac init, lookahead, multi-crop TTA (compact_cnn)")
    train.add_argument("--out", type=Path, required=True, help="folder for checkpoints, curves and history")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt after an interruption")
    train.add_argument("--export", type=Path, default=None, help="also write compact fp16 weights here")
    _add_config_flags(train, TrainConfig, skip={"recipe"})
    train.set_defaults(func=_cmd_train_extractor)

    ev = sub.add_parser("evaluate-extractor", help="test accuracy and k-NN accuracy of an extractor")
    ev.add_argument("--model", default="compact_cnn", help="zoo model name")
    ev.add_argument("--weights", default="default", help="default | random | pretrained | a weights file")
    ev.add_argument("--dataset", default="cifar10-mini", help="cifar10 | cifar100 | imagefolder | cifar10-mini")
    ev.add_argument("--root", default="", help="dataset folder (cifar10/cifar100/imagefolder)")
    ev.add_argument("--download", action="store_true", help="let torchvision download CIFAR into --root")
    ev.add_argument("--k", type=int, default=5, help="neighbours for the k-NN accuracy")
    ev.add_argument("--metric", choices=["cosine", "euclidean"], default="cosine")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--num-workers", type=int, default=2)
    ev.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ev.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto", help="bf16 autocast (auto: where fast)")
    ev.add_argument("--tta", choices=["none", "flip"], default="flip",
                    help="embedding test-time augmentation for the k-NN figure (extractor.tta)")
    ev.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    ev.add_argument("--plots", type=Path, default=None, help="write embeddings_<method>.png and knn_samples.png here")
    ev.add_argument("--plot-method", choices=["tsne", "pca"], default="tsne")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=_cmd_evaluate_extractor)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Bad input ends in one ``fedsim: error: ...`` line (exit status 2); Ctrl-C or SIGTERM in
    one ``fedsim: interrupted ...`` line (128 + the signal number), after the run's cleanup."""
    args = build_parser().parse_args(argv)
    setup_console(args.verbose)
    from fedsim.config import ScenarioError
    from fedsim.data import DatasetError
    from fedsim.interrupts import signals_as_interrupts

    with signals_as_interrupts():
        try:
            return args.func(args)
        except (ScenarioError, DatasetError, UsageError) as err:
            print(f"fedsim: error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as err:
            signum = getattr(err, "signum", signal.SIGINT)
            print(f"fedsim: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
            return 128 + int(signum)


if __name__ == "__main__":
    sys.exit(main())
