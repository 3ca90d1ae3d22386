"""The short table the CLI prints after a run."""

from __future__ import annotations

from typing import Any

#: client-mean privacy metrics of a release, as named in results.json
PRIVACY_KEYS = ("overlap", "near_overlap", "reconstruction_error", "projection_robustness",
                "reidentification_rate", "reidentification_baseline", "mia_auc", "inversion_mse",
                "inversion_cosine", "epsilon", "delta", "reidentification_rate_member", "inversion_cosine_member",
                "anonymeter_linkability", "anonymeter_inference")


def _num(v: Any, width: int = 10, places: int = 4) -> str:
    """A number, or '-' for a missing one (NaN is stored as null in results.json)."""
    return f"{v:>{width}.{places}f}" if isinstance(v, (int, float)) and v == v else f"{'-':>{width}}"


def format_summary(results: dict[str, Any]) -> str:
    names = list(results["accuracy"])
    header = f"{'client':>8} {'n_train':>8} {'n_query':>8} " + " ".join(f"{n:>10}" for n in names)
    lines = [header, "-" * len(header)]
    n_train = n_query = 0
    for c in sorted(results["clients"], key=lambda c: (c["id"] is None, c["id"] or 0)):
        if c["status"] != "ok":
            lines.append(f"{str(c['id']):>8} FAILED: {c['error'].splitlines()[0] if c['error'] else ''}")
            continue
        n_train += c["n_train"]
        n_query += c["n_query"]
        accs = " ".join(_num(c["accuracy"].get(n)) for n in names)
        lines.append(f"{c['id']:>8} {c['n_train']:>8} {c['n_query']:>8} {accs}")
    lines.append("-" * len(header))
    glob = " ".join(_num(results["accuracy"][n]) for n in names)
    lines.append(f"{'global':>8} {n_train:>8} {n_query:>8} {glob}")
    return "\n".join(lines)


def format_releases(results: dict[str, Any]) -> str:
    """One line per anonymizer configuration: utility and the main attack results."""
    releases = results.get("releases", [])
    if not releases:
        return ""
    clfs = list(dict.fromkeys(c for r in releases for c in r["accuracy"]))  # aggregate flows add their own
    cols = ["reidentification_rate", "mia_auc", "inversion_cosine", "near_overlap"]
    width = max(len(r["label"]) for r in releases)
    head = f"{'configuration':<{width}} " + " ".join(f"{c:>10} {'loss':>7}" for c in clfs) + " " + " ".join(
        f"{c.replace('reidentification_rate', 'reid').replace('inversion_cosine', 'inv_cos'):>12}" for c in cols)
    lines = [head, "-" * len(head)]
    for r in releases:
        accs = " ".join(f"{_num(r['accuracy'].get(c), 10, 4)} {_num(r['accuracy_loss'].get(c), 7, 4)}" for c in clfs)
        priv = " ".join(_num(r["privacy"].get(c), 12, 3) for c in cols)
        lines.append(f"{r['label']:<{width}} {accs} {priv}")
    return "\n".join(lines)


ONLINE_COLUMNS = [("average_accuracy", "ACC"), ("mean_round_accuracy", "round acc"),
                  ("average_forgetting", "forgetting"), ("backward_transfer", "BWT"),
                  ("forward_transfer", "FWT"), ("avg_training_time_s", "train s"),
                  ("avg_inference_time_s", "infer s")]


def format_online(results: dict[str, Any]) -> str:
    """Continual-learning metrics per online configuration and classifier."""
    entries = results.get("online") or []
    if not entries:
        return ""
    width = max(len(e["label"]) for e in entries)
    cw = max(len(n) for e in entries for n in e["classifiers"])
    head = f"{'configuration':<{width}} {'classifier':<{cw}} " + " ".join(f"{h:>10}" for _, h in ONLINE_COLUMNS)
    lines = [head, "-" * len(head)]
    for e in entries:
        for name, res in e["classifiers"].items():
            vals = " ".join(_num(res["metrics"].get(k)) for k, _ in ONLINE_COLUMNS)
            lines.append(f"{e['label']:<{width}} {name:<{cw}} {vals}")
    return "\n".join(lines)
