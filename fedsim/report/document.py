"""The run report: ``report.md`` and a self-contained ``report.html`` (plots embedded), built
from a run folder alone -- results.json, scenario.toml and the plots beside them -- so
``fedsim report RUN_DIR`` can rebuild it at any time.

A report is a list of blocks (heading, paragraph, table, image, code) rendered twice.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path
from typing import Any

from fedsim.report.clients import CLIENT_METRICS, client_table, label_entropy, write_client_plots
from fedsim.report.dp import dp_rows, plot_epsilon
from fedsim.report.results import write_text
from fedsim.report.summary import ONLINE_COLUMNS, PRIVACY_KEYS
from fedsim.report.traffic import plot_traffic, traffic_rows

Block = tuple


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _images(run_dir: Path, pattern: str) -> list[Path]:
    return sorted(run_dir.glob(pattern))


def display_name(run_dir: Path) -> str:
    """The run folder's final name (reports are first built inside the hidden temp folder)."""
    m = re.match(r"^\.(.+)-[^-]{8}$", run_dir.name)
    return m.group(1) if m else run_dir.name


def _section_overview(results: dict[str, Any], run_dir: Path) -> list[Block]:
    ok = [c for c in results["clients"] if c.get("status") == "ok"]
    text = (f"Scenario **{results['scenario']}** (seed {results['seed']}, engine {results['engine']}): "
            f"{results['num_clients']} clients ({results['num_failed']} failed), dataset {results['dataset']}, "
            f"partition {results['partition']}, extractor {results['extractor']}; "
            f"{sum(c['n_train'] for c in ok)} training and {sum(c['n_query'] for c in ok)} query records.")
    blocks: list[Block] = [("h1", f"fedsim report: {display_name(run_dir)}"), ("p", text)]
    scenario = run_dir / "scenario.toml"
    if scenario.is_file():
        blocks += [("h2", "Scenario"), ("code", scenario.read_text(encoding="utf-8"))]
    return blocks


def _section_partition(results: dict[str, Any], run_dir: Path) -> list[Block]:
    rows = []
    for c in sorted(results["clients"], key=lambda c: (c["id"] is None, c["id"] or 0)):
        if "n_train" not in c:  # failed before its first release
            rows.append([c["id"], "failed", "-", "-", "-", c.get("error", "")[:80]])
            continue
        rows.append([c["id"], c["status"], c["n_train"], c["n_query"], label_entropy(c["label_histogram"]),
                     c.get("embedding_cache", "-")])
    blocks: list[Block] = [("h2", "Data partition"),
                           ("table", ["client", "status", "n_train", "n_query", "label entropy (bits)",
                                      "embedding cache"], rows)]
    if (run_dir / "partition.png").is_file():
        blocks.append(("img", "partition.png", "Training records per class and client."))
    return blocks


def _section_participation(results: dict[str, Any]) -> list[Block]:
    """Who took part in each round (sampled participation only)."""
    part, releases = results.get("participation"), results.get("releases", [])
    if not part or not releases:
        return []
    rounds = releases[0].get("participation", [])
    rows = [[r["round"], len(r["sampled"]), len(r["dropped"]), len(r["late"]), len(r["failed"]), len(r["took_part"])]
            for r in rounds]
    never = part["never_took_part"]
    note = (f"Each round the server sampled a fraction {part['fraction']} of the clients still in (at least "
            f"{part['min_sampled']}); a sampled client dropped out with probability {part['dropout']}, and a reply "
            f"delayed past {_fmt(part['deadline_s'])} s (simulated; mean delay {_fmt(part['delay_s'])} s) was late: "
            "received but not used that round. Accuracy, privacy and timings are over the clients that took part"
            + (f"; {len(never)} client(s) never did." if never else "."))
    return [("h2", "Participation"), ("p", note),
            ("table", ["round", "sampled", "dropped", "late", "failed", "took part"], rows)]


def _section_accuracy(results: dict[str, Any]) -> list[Block]:
    releases = results.get("releases", [])
    clfs = list(dict.fromkeys([*results["accuracy"], *(c for r in releases for c in r["accuracy"])]))
    header = ["configuration"] + [f"{c} accuracy" for c in clfs] + [f"{c} loss vs none" for c in clfs]
    rows = [[r["label"]] + [r["accuracy"].get(c) for c in clfs] + [r["accuracy_loss"].get(c) for c in clfs]
            for r in releases]
    per_client = [[c["id"]] + [c["accuracy"].get(n) for n in clfs] for c in results["clients"] if c.get("status") == "ok"]
    note = ("Global accuracy pools every client's queries; the loss is measured against the `none` "
            "reference of the same run (same clients, same queries).")
    if results.get("online"):
        note += " In online runs the accuracy is each classifier's average accuracy after the last round."
    return [("h2", "Accuracy per classifier"), ("p", note), ("table", header, rows),
            ("h3", f"Per client ({releases[0]['label'] if releases else 'first configuration'})"),
            ("table", ["client"] + clfs, per_client)]


def _section_privacy(results: dict[str, Any], run_dir: Path) -> list[Block]:
    releases = results.get("releases", [])
    keys = [k for k in PRIVACY_KEYS if any(r["privacy"].get(k) is not None for r in releases)]
    if not keys:
        return [("h2", "Privacy"), ("p", "No privacy metrics were measured (privacy.metrics = false).")]
    rows = [[r["label"]] + [with_ci(r["privacy"], k) for k in keys] for r in releases]
    clf = next(iter(results["accuracy"]))
    header, crows = client_table(results, clf)
    blocks: list[Block] = [
        ("h2", "Privacy per method (client mean)"),
        *([("p", "Attacker profile: " + "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in
                                                results["attacker_profile"].items()) + ".")]
          if results.get("attacker_profile") else []),
        ("p", "Each client measures its own release under emulated attacks (README: metric definitions). "
              "Rates are pooled over every client's evaluated records, with 95% intervals in brackets "
              "(Wilson for rates, DeLong for the AUC) and the number of evaluated records; '-' is a metric "
              "that is undefined for the method or rests on too few records."),
        ("table", ["configuration"] + keys, rows),
        ("h2", "Clients compared"),
        ("p", "Per-client privacy and utility side by side; label entropy shows each client's skew "
              f"(log2 of the number of classes = balanced). Accuracy columns use {clf}."),
        ("table", header, crows),
    ]
    for key, title in CLIENT_METRICS:
        name = f"clients_{key}.png"
        if (run_dir / name).is_file():
            blocks.append(("img", name, title))
    return blocks


def with_ci(table: dict[str, Any], k: str) -> Any:
    """``0.950 [0.931, 0.966] n=1250`` when the metric has an interval, else the value."""
    v, low, high = table.get(k), table.get(f"{k}_ci_low"), table.get(f"{k}_ci_high")
    if v is None or low is None or high is None:
        return v
    n = table.get(f"{k}_n", table.get(f"{k}_n_members"))
    return f"{v:.3f} [{low:.3f}, {high:.3f}]" + (f" n={int(n)}" if n else "")


def _section_attackers(results: dict[str, Any]) -> list[Block]:
    """Server vs insider, for the keyed methods (the insider also holds the federation key)."""
    keyed = [r for r in results.get("releases", []) if r.get("privacy_insider")]
    if not keyed:
        return []
    keys = [k for k in ("reidentification_rate", "mia_auc", "inversion_cosine", "inversion_mse", "near_overlap")
            if any(k in r["privacy"] for r in keyed)]
    rows = [[r["label"], attacker] + [with_ci(table, k) for k in keys]
            for r in keyed for attacker, table in (("server", r["privacy"]), ("insider", r["privacy_insider"]))]
    return [("h2", "Attackers: server and insider"),
            ("p", "**server** holds what it received (every release, plus the auxiliary known pairs the attacks "
                  "assume); it never holds the federation key, which is a client-side secret. **insider** also "
                  "holds the key (another client, or a leaked key file) and inverts the keyed transform before "
                  "attacking. The gap between the two rows is what the key protects."),
            ("table", ["configuration", "attacker"] + keys, rows)]


def _section_wire(results: dict[str, Any], run_dir: Path) -> list[Block]:
    """Evaluation mode, what was flagged, failures and bytes on the wire."""
    blocks: list[Block] = [("h2", "What crossed the wire")]
    flags = []
    for r in results.get("releases", []):
        ev = r.get("evaluation", {})
        if ev.get("queries_in_clear"):
            flags.append(f"`{r['label']}`: server-side evaluation sent the clients' query embeddings UNCHANGED "
                         "(the method does not transform queries); use `federation.evaluation = \"client\"` to keep them local.")
        if ev.get("pool_shared_with_clients"):
            flags.append(f"`{r['label']}`: the kNN pool -- every client's release -- was shipped to every client "
                         "(`federation.share_pool_with_clients = true`).")
        for name, why in ev.get("not_evaluated", {}).items():
            flags.append(f"`{r['label']}` / {name}: not evaluated: {why}.")
    mode = results.get("evaluation", "server")
    blocks.append(("p", f"Evaluation on the **{mode}**: " + (
        "clients sent their queries transformed by the method's per-record part; the server scored them."
        if mode == "server" else "the server shipped compact models; clients scored their own queries.")))
    blocks += [("p", "**Flag:** " + f) for f in flags]
    failures = results.get("failures") or []
    if failures:
        blocks += [("h3", "Failures"), ("table", ["client", "phase", "configuration", "round", "reason"],
                                        [[f["client"], f["phase"], f["index"], f["round"], f["reason"][:160]]
                                         for f in failures])]
    if results.get("traffic"):
        t = results["traffic"]
        blocks += [("p", f"Clients sent {t['total_sent_bytes'] / 1e6:.2f} MB and received "
                         f"{t['total_received_bytes'] / 1e6:.2f} MB in all."),
                   ("table", ["client", "sent (bytes)", "received (bytes)", "sent per phase"], traffic_rows(results))]
        if (run_dir / "traffic.png").is_file():
            blocks.append(("img", "traffic.png", "Bytes each client sent (by phase) and received."))
    return blocks


def _section_plots(run_dir: Path, title: str, patterns: list[str], note: str = "") -> list[Block]:
    files = [p for pattern in patterns for p in _images(run_dir, pattern)]
    if not files:
        return []
    return [("h2", title)] + ([("p", note)] if note else []) + [("img", p.name, p.stem) for p in files]


def _section_online(results: dict[str, Any], run_dir: Path) -> list[Block]:
    entries = results.get("online") or []
    if not entries:
        return []
    rows = [[e["label"], name] + [res["metrics"].get(k) for k, _ in ONLINE_COLUMNS]
            for e in entries for name, res in e["classifiers"].items()]
    blocks: list[Block] = [
        ("h2", "Online continual learning"),
        ("p", f"{entries[0]['rounds']} rounds, setting {entries[0]['setting']}; domains per round: "
              + ", ".join(entries[0]["domains"]) + ". R[i][j] is the accuracy after round i on round j's test domain."),
        ("table", ["configuration", "classifier"] + [h for _, h in ONLINE_COLUMNS], rows)]
    effects = [[e["label"], name] + [v for v in eff.values()] for e in entries for name, eff in e["replay_effect"].items()]
    if effects:
        keys = list(next(iter(entries[0]["replay_effect"].values())))
        blocks += [("h3", "Replay effect (with replay minus without)"), ("table", ["configuration", "classifier"] + keys, effects)]
    blocks += [("img", p.name, p.stem) for pat in ("online_accuracy-*.png", "online_R-*.png",
                                                   "online_accuracy_vs_batch_size.png") for p in _images(run_dir, pat)]
    return blocks


def _section_dp(results: dict[str, Any], run_dir: Path) -> list[Block]:
    rows = dp_rows(results)
    if not rows:
        return []
    blocks: list[Block] = [
        ("h2", "Differential privacy, accounted"),
        ("p", "Each `dp_gaussian` release is a Gaussian mechanism per record (noise multiplier = noise standard "
              "deviation / L2 sensitivity); dp-accounting's privacy-loss-distribution accountant composes it. "
              "'Alone' is this configuration (online: every round a client took part in, its queries re-sent each "
              "round under server-side evaluation); 'run' composes every DP configuration of the run so far -- the "
              "run's non-DP configurations are comparisons and are left out (really releasing them would leave "
              "no guarantee). Values are for the most exposed client."),
        ("table", ["configuration", "noise multiplier", "delta", "epsilon (alone)", "epsilon (run so far)"], rows)]
    if (run_dir / "epsilon.png").is_file():
        blocks.append(("img", "epsilon.png", "Epsilon of the most exposed client."))
    return blocks


def _section_timings(results: dict[str, Any]) -> list[Block]:
    rows = [[k, v] for k, v in results.get("timings", {}).items()]
    for r in results.get("releases", []):
        for clf, t in r["timings"].get("classifiers", {}).items():
            rows.append([f"{r['label']} / {clf} fit_s", t.get("fit_s")])
        rows.append([f"{r['label']} collect_s", r["timings"].get("collect_s")])
    for c in results["clients"]:
        if c.get("status") == "ok":
            rows.append([f"client {c['id']} extract_s", c["timings"].get("extract_s")])
    return [("h2", "Timings (seconds)"), ("table", ["what", "seconds"], rows)]


def _section_environment(results: dict[str, Any]) -> list[Block]:
    env = results.get("environment")
    if not env:
        return []
    rows = [["python", env["python"]], ["platform", env["platform"]], ["cpu", f"{env['cpu']} ({env['cpu_count']} cores)"],
            ["cuda", env["cuda"] or "none"], ["bf16 on cpu", env["bf16_cpu"]]]
    rows += [[k, v] for k, v in env["packages"].items()]
    return [("h2", "Environment"), ("table", ["", ""], rows)]


def report_blocks(run_dir: Path, results: dict[str, Any]) -> list[Block]:
    return [
        *_section_overview(results, run_dir),
        *_section_partition(results, run_dir),
        *_section_participation(results),
        *_section_accuracy(results),
        *_section_privacy(results, run_dir),
        *_section_attackers(results),
        *_section_wire(results, run_dir),
        *_section_plots(run_dir, "Privacy-utility trade-off", ["tradeoff_*.png"],
                        "Each point is one configuration; the line joins the Pareto front."),
        *_section_plots(run_dir, "Embeddings", ["embeddings_*.png", "knn_samples.png"],
                        "One projection fitted on all panels of a figure, so panels are comparable."),
        *_section_online(results, run_dir),
        *_section_dp(results, run_dir),
        *_section_timings(results),
        *_section_environment(results),
    ]


# ------------------------------------------------------------------------ rendering


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "code":
            out.append("```toml\n" + b[1].rstrip() + "\n```")
        elif kind == "table":
            header, rows = b[1], b[2]
            lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
    return "\n\n".join(out) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:0.5em 0}
figure{margin:1em 0}figcaption{font-size:12px;color:#555}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
.scroll{overflow-x:auto}h2{border-bottom:1px solid #ddd;padding-bottom:0.2em;margin-top:1.6em}"""


def _inline(text: str) -> str:
    """Escape, then the two markdown marks the report uses (**bold**, `code`)."""
    parts = html.escape(text).split("**")
    text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks: list[Block], run_dir: Path) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(blocks[0][1])}</title>"
           f"<style>{CSS}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_inline(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "code":
            out.append(f"<pre>{html.escape(b[1])}</pre>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in b[2])
            out.append(f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
        elif kind == "img":
            data = base64.b64encode((run_dir / b[1]).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def build_report(run_dir: str | Path) -> tuple[Path, Path]:
    """(report.md, report.html) of a run folder; plots derivable from results.json are drawn first."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no results.json (is this a fedsim run folder?)")
    results = json.loads(path.read_text(encoding="utf-8"))
    write_client_plots(run_dir, results)
    plot_traffic(results, run_dir / "traffic.png")
    plot_epsilon(results, run_dir / "epsilon.png")
    blocks = report_blocks(run_dir, results)
    write_text(run_dir / "report.md", to_markdown(blocks))
    write_text(run_dir / "report.html", to_html(blocks, run_dir))
    return run_dir / "report.md", run_dir / "report.html"
