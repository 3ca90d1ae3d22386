"""Scenario files: typed schema, TOML loading, ``--set`` overrides and validation.

A scenario is checked completely before any work starts: unknown keys, wrong types and
out-of-range values raise one :class:`ScenarioError` whose message names the file, the
dotted key and what is allowed.  Pluggable families (datasets, partitioners, extractors,
anonymizers, classifiers) validate their own parameters through their registries, so the
schema never repeats their rules.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ScenarioError(ValueError):
    """A scenario that cannot run; the message is one line meant for the user."""


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _at_least(lo: float):
    def check(v: float) -> str | None:
        return None if v >= lo else f"must be >= {lo}"

    return check


def _one_of(*allowed: str):
    def check(v: str) -> str | None:
        return None if v in allowed else f"must be one of {', '.join(allowed)}"

    return check


def _check(fn, help: str = ""):
    """Field metadata: ``fn(value) -> error text or None``."""
    return {"check": fn, "help": help}


def _run_name(v: str) -> str | None:
    """A scenario name becomes a folder name: no path separators, no '..', nothing hidden."""
    ok = 0 < len(v) <= 100 and all(c.isalnum() or c in "._+-" for c in v) and v[0] not in ".-"
    return None if ok else ("must be 1-100 letters, digits, '.', '_', '+' or '-', not starting with '.' or '-' "
                            "(it names the run folder)")


_RAY_ADDRESS = re.compile(r"(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")


def parse_ray_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a Ray cluster address; None for "local" and "auto".

    Allowed: "local" (a private Ray instance), "auto" (the cluster this machine's
    ``ray start`` or RAY_ADDRESS names), "host:port" (a cluster's GCS) and "ray://host:port"
    (Ray Client).  Anything else is a ValueError saying so.
    """
    if address in ("local", "auto"):
        return None
    match = _RAY_ADDRESS.fullmatch(address)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError('must be "local", "auto", "host:port" or "ray://host:port" (port 1-65535)')
    return match["host"].strip("[]"), int(match["port"])


@dataclass
class DataConfig:
    dataset: str = "cifar10-mini"
    root: str = ""
    download: bool = False


@dataclass
class PartitionConfig:
    # a Flower Datasets partitioner by class name, or iid | dirichlet | shards | natural_id
    method: str = "iid"
    # its parameters ([partition.params]); fedsim sets num_partitions, partition_by and seed;
    # checked by fedsim.data.partition
    params: dict[str, Any] = field(default_factory=dict)

    # scenarios written before [partition.params] set alpha etc. in [partition] itself
    unknown_key_hint = "; the partitioner's parameters go in [partition.params]"


@dataclass
class ClientResources:
    num_cpus: float = field(default=1.0, metadata=_check(_positive))
    # Used only when CUDA exists; on CPU-only machines clients get 0 GPUs (Ray crashes otherwise).
    num_gpus: float = field(default=0.25, metadata=_check(_at_least(0)))


@dataclass
class FaultConfig:
    """A test-only fault one client injects into its own replies (``[[federation.faults]]``)."""

    client: int = field(default=0, metadata=_check(_at_least(0)))
    # secure_sums: SecAgg+'s collect stage, after the client shared its keys and mask shares
    phase: str = field(default="release", metadata=_check(_one_of(
        "stats", "release", "evaluate", "online", "online_evaluate", "secure_sums", "fedavg")))
    kind: str = field(default="raise", metadata=_check(_one_of("raise", "malformed", "timeout")))
    # malformed: what is wrong with the reply
    how: str = field(default="nan", metadata=_check(_one_of(
        "nan", "dim", "missing", "labels", "negative_labels", "rows", "label_length", "partition")))
    index: int = field(default=-1, metadata=_check(_at_least(-1)))  # configuration; -1 = every
    round: int = field(default=-1, metadata=_check(_at_least(-1)))  # online round; -1 = every


def _fraction(v: float) -> str | None:
    return None if 0 < v <= 1 else "must be in (0, 1]"


def _probability(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


@dataclass
class ParticipationConfig:
    """Who takes part in each round (``[federation.participation]``): a seeded sample of the
    clients still in, a chance of dropping out, and simulated reply delays against a
    deadline. The draws depend on (seed, round, partition id) only, so every configuration
    of a run sees the same clients in the same round (strategies/participation.py)."""

    # share of the clients still in that the server asks each round (Flower's fraction_train)
    fraction: float = field(default=1.0, metadata=_check(_fraction))
    # ask at least this many each round (Flower's min_train_nodes); all when fewer remain
    min_sampled: int = field(default=1, metadata=_check(_at_least(1)))
    # chance that a sampled client is unavailable for a round (no message reaches it)
    dropout: float = field(default=0.0, metadata=_check(_probability))
    # mean simulated reply delay in seconds, exponential per round; 0 = no delays
    delay_s: float = field(default=0.0, metadata=_check(_at_least(0)))
    # spread of the clients' own mean delays (sigma of a log-normal): slow and fast devices
    delay_spread: float = field(default=1.0, metadata=_check(_at_least(0)))
    # a reply delayed past this many seconds is late: received, recorded, not used in that
    # round; the client stays in. 0 = federation.round_timeout
    deadline_s: float = field(default=0.0, metadata=_check(_at_least(0)))

    def enabled(self) -> bool:
        return self.fraction < 1 or self.dropout > 0 or self.delay_s > 0


def _shares(v: int) -> str | None:
    return None if v == 0 or v >= 3 else "must be 0 (every client asked) or >= 3"


def _threshold(v: int) -> str | None:
    return None if v == 0 or v >= 2 else "must be 0 (more than half of the shares) or >= 2"


@dataclass
class SecureAggregationConfig:
    """Flower's SecAgg+ for the aggregate flows (``[federation.secure_aggregation]``): the
    server learns the sum of the clients' statistics, never one client's. Each statistic
    is divided by a public scale, ``bound / clipping_range`` with ``bound`` the largest entry
    one client's statistic can have (``max_records`` records of L2 norm <= ``max_norm``),
    then clipped to +-clipping_range and quantised to ``quantization_range`` levels
    (fedsim.protocol.SecureEncoding)."""

    enabled: bool = False
    # clients each secret is shared with; 0 = every client asked in the round
    num_shares: int = field(default=0, metadata=_check(_shares))
    # shares that rebuild a secret (a dropped client's masks); 0 = num_shares // 2 + 1
    reconstruction_threshold: int = field(default=0, metadata=_check(_threshold))
    clipping_range: float = field(default=8.0, metadata=_check(_positive))
    # levels of [-clipping_range, clipping_range]; clients x levels must stay below 2**32 (SecAgg+'s modulus)
    quantization_range: int = field(default=2 ** 22, metadata=_check(
        lambda v: None if 2 <= v <= 2 ** 30 else "must be in [2, 2**30]"))
    # public bounds (required when enabled): training records of one client, L2 norm of one
    # embedding (fed_ridge with random features uses its features' bound, sqrt(2))
    max_records: int = field(default=0, metadata=_check(_at_least(0)))
    max_norm: float = field(default=0.0, metadata=_check(_at_least(0)))


def _dp_epsilon(v: Any) -> str | None:
    ok = v == "off" or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0)
    return None if ok else 'must be "off" or a number > 0'


@dataclass
class FedAvgHeadConfig:
    """``fedavg_head`` (``[aggregates.fedavg_head]``; a list value sweeps): an FC head trained
    with Flower's FedAvg -- FedProx when ``proximal_mu > 0`` -- for ``rounds`` rounds of
    ``local_epochs`` of SGD on each participating client's embeddings
    (fedsim.strategies.fedavg, fedsim.clients.fedavg).  Differential privacy on the updates
    (``epsilon`` or ``noise_multiplier``): each client clips its update to L2 norm
    ``clip_norm`` and adds Gaussian noise before it leaves (client-level; README)."""

    rounds: int = field(default=10, metadata=_check(_at_least(1)))
    local_epochs: int = field(default=1, metadata=_check(_at_least(1)))
    batch_size: int = field(default=32, metadata=_check(_at_least(1)))
    lr: float = field(default=0.05, metadata=_check(_positive))  # local SGD step size
    momentum: float = field(default=0.0, metadata=_check(_probability))  # [0, 1); reset every round
    weight_decay: float = field(default=0.0, metadata=_check(_at_least(0)))
    proximal_mu: float = field(default=0.0, metadata=_check(_at_least(0)))  # > 0: FedProx's mu/2 |w - w_global|^2
    hidden: int = field(default=0, metadata=_check(_at_least(0)))  # 0 = linear head (as classifiers.fc)
    normalize: str = field(default="l2", metadata=_check(_one_of("l2", "none")))
    evaluate_every: int = field(default=0, metadata=_check(_at_least(0)))  # also score every k rounds; 0 = last only
    # DP: "off", or the epsilon (at ``delta``) a client spends if it takes part in all ``rounds``
    epsilon: Any = field(default="off", metadata=_check(_dp_epsilon))
    delta: float = field(default=1e-5, metadata=_check(lambda v: None if 0 < v < 1 else "must be in (0, 1)"))
    noise_multiplier: float = field(default=0.0, metadata=_check(_at_least(0)))  # instead of epsilon; 0 = off
    clip_norm: float = field(default=1.0, metadata=_check(_positive))  # L2 bound of one client's update (DP only)

    @property
    def dp(self) -> bool:
        return self.epsilon != "off" or self.noise_multiplier > 0

    def resolved_noise_multiplier(self) -> float:
        """Noise standard deviation over the update's L2 sensitivity (2 x clip_norm), 0 without
        DP; from ``epsilon``: a Gaussian composed over ``rounds`` releases is one Gaussian with
        multiplier z / sqrt(rounds), so z = sqrt(rounds) x the analytic one-release multiplier."""
        if self.noise_multiplier > 0:
            return self.noise_multiplier
        if self.epsilon == "off":
            return 0.0
        from fedsim.anonymizers.noise import analytic_gaussian_sigma

        return analytic_gaussian_sigma(float(self.epsilon), self.delta, 1.0) * math.sqrt(self.rounds)


def fedavg_head_configs(params: dict[str, Any], prefix: str = "aggregates.fedavg_head"
                        ) -> list[tuple[dict[str, Any], FedAvgHeadConfig]]:
    """Every configuration of ``[aggregates.fedavg_head]`` (a list value sweeps it), each
    checked: unknown keys and bad values name the key and what is allowed."""
    out = []
    for combo in sweep(params):
        cfg = _build(FedAvgHeadConfig, combo, prefix)
        if cfg.epsilon != "off" and cfg.noise_multiplier > 0:
            raise ScenarioError(f"{prefix}: set epsilon or noise_multiplier, not both (epsilon = {cfg.epsilon!r}, "
                                f"noise_multiplier = {cfg.noise_multiplier!r})")
        out.append((combo, cfg))
    return out


#: aggregate flows whose parameters are a schema table here (the others: their registry's)
AGGREGATE_SCHEMAS = {"fedavg_head": fedavg_head_configs}


def _strategies(v: Any) -> str | None:
    names = v if isinstance(v, list) else [v]
    ok = names and all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)
    return None if ok else "must be a flow name or a non-empty list of distinct flow names"


@dataclass
class FederationConfig:
    num_clients: int = field(default=4, metadata=_check(_at_least(1)))
    engine: str = field(default="simulation", metadata=_check(_one_of("simulation")))
    # the server flow, a registered fedsim.strategies name (checked by the driver before any
    # work); auto = "online" when online.rounds > 0, else "release"; a list runs several flows
    # in order on one federation (same clients, same queries), e.g. ["release", "fed_ncm"]
    strategy: Any = field(default="auto", metadata=_check(_strategies))
    round_timeout: float = field(default=900.0, metadata=_check(_positive))
    ray_address: str = "local"
    # the run goes on while at least this many clients succeed; 0 = more than half
    min_clients: int = field(default=0, metadata=_check(_at_least(0)))
    # server: clients send transformed queries and the server scores them; client: the server
    # ships compact models (ncm, fc) and clients score their own queries
    evaluation: str = field(default="server", metadata=_check(_one_of("server", "client")))
    # client evaluation of knn / knn_ncm ships the pooled releases of ALL clients to each client
    share_pool_with_clients: bool = False
    # the most rows one release may have (the server rejects larger replies)
    max_release_rows: int = field(default=1_000_000, metadata=_check(_at_least(1)))
    # simulation: messages in flight at once (the rest wait on the server); 0 = auto, four
    # per client Ray can run at once (fedsim run) or all at once (flwr run)
    max_in_flight: int = field(default=0, metadata=_check(_at_least(0)))
    client_resources: ClientResources = field(default_factory=ClientResources)
    participation: ParticipationConfig = field(default_factory=ParticipationConfig)
    secure_aggregation: SecureAggregationConfig = field(default_factory=SecureAggregationConfig)
    faults: list = field(default_factory=list)  # [[federation.faults]] tables (FaultConfig)

    def quorum(self) -> int:
        """Clients that must succeed for the run to go on."""
        return self.min_clients or self.num_clients // 2 + 1

    def fault_list(self) -> list[FaultConfig]:
        return [_build(FaultConfig, f, "federation.faults") for f in self.faults]


@dataclass
class ExtractorConfig:
    name: str = "compact_cnn"
    weights: str = "default"  # default (shipped) | random | pretrained | a weights file
    download: bool = False  # let weights = "pretrained" fetch a missing release (needs internet)
    batch_size: int = field(default=256, metadata=_check(_at_least(1)))
    num_workers: int = field(default=0, metadata=_check(_at_least(0)))
    device: str = field(default="auto", metadata=_check(_one_of("auto", "cpu", "cuda")))
    # bf16 autocast: auto = on CUDA and on CPUs with bf16 matrix units; off = fp32
    amp: str = field(default="auto", metadata=_check(_one_of("auto", "bf16", "off")))
    # embedding test-time augmentation: flip = mean of the image's and its mirror image's
    # embeddings (twice the compute, +0.8 points 5-NN with the shipped weights); none = the image alone
    tta: str = field(default="flip", metadata=_check(_one_of("none", "flip")))
    cache: bool = True  # reuse embeddings from the on-disk cache (keyed by weights, data, indices)
    cache_dir: str = ""  # default: $FEDSIM_CACHE_DIR/embeddings or ~/.cache/fedsim/embeddings


@dataclass
class PlotsConfig:
    """Extractor diagnostics drawn by the simulation driver after the run (it sees all data)."""

    embeddings: str = field(default="off", metadata=_check(_one_of("off", "tsne", "pca")))
    knn_samples: bool = False


@dataclass
class PrivacyConfig:
    """How clients measure their own privacy (emulated attacks) for every release."""

    metrics: bool = True
    aux_fraction: float = field(default=0.1, metadata=_check(lambda v: None if 0 < v < 1 else "must be in (0, 1)"))
    max_samples: int = field(default=5000, metadata=_check(_at_least(100)))
    # also run the `none` reference round when it is not listed (accuracy loss needs it)
    reference: bool = True
    # also report anonymeter's linkability and inference risks (optional dependency, README)
    anonymeter: bool = False
    # the delta at which the accountant reports the composed epsilon of dp_gaussian releases
    dp_delta: float = field(default=1e-5, metadata=_check(lambda v: None if 0 < v < 1 else "must be in (0, 1)"))


@dataclass
class AuditConfig:
    """Record every message that crosses the wire (``audit.jsonl``: round, phase, direction,
    client, array names, shapes, dtypes, bytes); ``save_received`` also keeps every array
    the server received (``received/``)."""

    messages: bool = False
    save_received: bool = False


def _batch_sizes(v: Any) -> str | None:
    values = v if isinstance(v, list) else [v]
    ok = values and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in values)
    return None if ok else "must be an integer >= 1 or a non-empty list of them (a list sweeps it)"


@dataclass
class ReplayConfig:
    """Generative replay on the server: a class-conditional GAN on what it has received.

    When enabled, every classifier is trained twice from the same releases -- as is and
    ``<name>+replay`` -- so results show whether replay helps or hurts each of them.
    """

    enabled: bool = False
    # share of the replay memory mixed into each round's training batch (the study's knob)
    memory_sample_percentage: float = field(
        default=1.0, metadata=_check(lambda v: None if 0 < v <= 1 else "must be in (0, 1]"))
    n_epochs_gan: int = field(default=10, metadata=_check(_at_least(1)))
    batch_size_gan: int = field(default=32, metadata=_check(_at_least(2)))
    memory_size: int = field(default=2000, metadata=_check(_at_least(1)))  # bounded, class-balanced
    latent_dim: int = field(default=64, metadata=_check(_at_least(1)))
    lr: float = field(default=2e-4, metadata=_check(_positive))


@dataclass
class OnlineConfig:
    """Online continual-learning rounds: new data from every client in every round."""

    rounds: int = field(default=0, metadata=_check(_at_least(0)))  # 0 = one-shot release, no rounds
    # records per client per round; a list sweeps it (the study's accuracy-vs-batch-size plot)
    batch_size: Any = field(default=100, metadata=_check(_batch_sizes))
    sampling: str = field(default="balanced", metadata=_check(_one_of("balanced", "stratified")))
    setting: str = field(default="iid", metadata=_check(_one_of("iid", "domain_shift")))
    # domain_shift: one test/train domain per round ("clean", "gaussian_noise:3", ...);
    # empty = fedsim.online.corruptions.default_schedule
    domains: list = field(default_factory=list)
    replay: ReplayConfig = field(default_factory=ReplayConfig)

    def batch_sizes(self) -> list[int]:
        return list(self.batch_size) if isinstance(self.batch_size, list) else [self.batch_size]

    def schedule(self, seed: int) -> list:
        """The image domain of each round (``fedsim.online.corruptions.Domain``), from the
        scenario seed, so the server and every client derive the same one."""
        from fedsim.online.corruptions import round_domains
        from fedsim.seeding import derive_seed

        return round_domains(self.setting, self.rounds, self.domains, derive_seed(seed, "domain-schedule"))

    def test_domains(self, seed: int) -> list:
        """The distinct test domains, in first-appearance order (one in the iid setting)."""
        from fedsim.online.corruptions import distinct_domains

        return distinct_domains(self.schedule(seed))


@dataclass
class Scenario:
    name: str = field(default="scenario", metadata=_check(_run_name))
    seed: int = 0
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    extractor: ExtractorConfig = field(default_factory=ExtractorConfig)
    plots: PlotsConfig = field(default_factory=PlotsConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    # method name -> parameters (a list of values sweeps that parameter); validated by the registry
    anonymizers: dict[str, dict[str, Any]] = field(default_factory=lambda: {"none": {}})
    classifiers: dict[str, dict[str, Any]] = field(default_factory=lambda: {"knn": {"k": 5}})
    # aggregate flow (fed_ncm, fed_ridge) -> its parameters (a list sweeps, as for anonymizers);
    # validated by its registry
    aggregates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def anonymizer_grid(self) -> list[tuple[str, dict[str, Any]]]:
        """Every (method, parameters) combination to run, in file order.

        A parameter given as a list is swept; several swept parameters of one method
        give their Cartesian product (the original study's tuning mode).  With
        ``privacy.reference`` the ``none`` reference comes first when it is not listed.
        """
        grid: list[tuple[str, dict[str, Any]]] = []
        if self.privacy.reference and "none" not in self.anonymizers:
            grid.append(("none", {}))
        for method, params in self.anonymizers.items():
            grid.extend((method, combo) for combo in sweep(params))
        return grid


def sweep(params: dict[str, Any], list_valued: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every combination of ``params``, a list value sweeping its parameter (Cartesian
    product, in file order); a parameter in ``list_valued`` takes a list as ONE value, and
    is swept by a list of lists."""
    keys = list(params)
    values = []
    for k, v in params.items():
        swept = isinstance(v, list) and (k not in list_valued or (bool(v) and all(isinstance(e, list) for e in v)))
        values.append(v if swept else [v])
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


# ---------------------------------------------------------------- loading & typing


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotated type; ints are accepted for floats."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ScenarioError(f"{key}: expected a table, got {value!r}")
        return _build(tp, value, key)
    origin = typing.get_origin(tp)
    if origin is dict:
        if not isinstance(value, dict):
            raise ScenarioError(f"{key}: expected a table, got {value!r}")
        return copy.deepcopy(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ScenarioError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is list and not isinstance(value, list):
        raise ScenarioError(f"{key}: expected a list, got {value!r}")
    if tp is bool and not isinstance(value, bool):
        raise ScenarioError(f"{key}: expected true or false, got {value!r}")
    if tp is str and not isinstance(value, str):
        raise ScenarioError(f"{key}: expected a string, got {value!r}")
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ScenarioError(
            f"unknown key {where}{unknown[0]}; allowed keys{' in ' + prefix if prefix else ''}: "
            f"{', '.join(fields)}{getattr(cls, 'unknown_key_hint', '')}"
        )
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        value = _coerce(value, hints[name], key)
        check = fields[name].metadata.get("check")
        if check is not None:
            problem = check(value)
            if problem:
                raise ScenarioError(f"{key} = {value!r} {problem}")
        kwargs[name] = value
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    """``--set`` values are TOML literals; anything else is taken as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` override to a raw scenario dict in place."""
    if "=" not in assignment:
        raise ScenarioError(f"--set {assignment!r}: expected key=value, e.g. federation.num_clients=8")
    key, text = assignment.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise ScenarioError(f"--set {assignment!r}: empty key part")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ScenarioError(f"--set {key}: {part} is not a table")
        node = child
    node[parts[-1]] = _parse_value(text.strip())


def validate(scenario: Scenario) -> None:
    """Cross-field and registry checks that the schema alone cannot express."""
    # Imported here: registries pull in torch, which config loading should not need.
    from fedsim import anonymizers, classifiers, extractors
    from fedsim.data import DATASETS, partition

    if scenario.data.dataset not in DATASETS:
        raise ScenarioError(
            f"data.dataset = {scenario.data.dataset!r} is unknown; allowed: {', '.join(DATASETS)}"
        )
    needs_root = ("cifar10", "cifar100", "imagefolder", "imagefolder-parties")
    if scenario.data.dataset in needs_root and not scenario.data.root:
        raise ScenarioError(f"data.root must be set for data.dataset = {scenario.data.dataset!r}")
    p = scenario.partition
    if p.method not in partition.REGISTRY:
        raise ScenarioError(f"partition.method = {p.method!r} is unknown; allowed: {', '.join(partition.REGISTRY)}")
    try:
        partition.validate(p.method, p.params, scenario.federation.num_clients)
    except ValueError as err:
        raise ScenarioError(f"partition.params: {err}") from None
    for section, table in (("anonymizers", scenario.anonymizers), ("classifiers", scenario.classifiers)):
        if not table:
            raise ScenarioError(f"{section}: name at least one method, e.g. [{section}.none]")
        for name, params in table.items():
            if not isinstance(params, dict):
                raise ScenarioError(f"{section}.{name}: expected a table of parameters, got {params!r}")
    for name, params in scenario.anonymizers.items():
        empty = [k for k, v in params.items() if isinstance(v, list) and not v]
        if empty:
            raise ScenarioError(f"anonymizers.{name}.{empty[0]}: a swept parameter needs at least one value")
    for name, params in scenario.classifiers.items():
        try:
            classifiers.validate(name, params)
        except ValueError as err:
            raise ScenarioError(f"classifiers.{name}: {err}") from None
    for name, params in scenario.anonymizer_grid():
        try:
            anonymizers.validate(name, params)
        except ValueError as err:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ScenarioError(f"anonymizers.{name}{f' ({shown})' if shown else ''}: {err}") from None
    _validate_aggregates(scenario)
    _validate_online(scenario)
    _validate_federation(scenario)
    try:
        parse_ray_address(scenario.federation.ray_address)
    except ValueError as err:
        raise ScenarioError(f"federation.ray_address = {scenario.federation.ray_address!r} {err}") from None
    try:
        extractors.validate(scenario.extractor.name,
                            {"weights": scenario.extractor.weights, "download": scenario.extractor.download})
    except ValueError as err:
        raise ScenarioError(f"extractor.weights: {err}") from None


def _validate_aggregates(scenario: Scenario) -> None:
    from fedsim.classifiers import federated

    for name, params in scenario.aggregates.items():
        if not isinstance(params, dict):
            raise ScenarioError(f"aggregates.{name}: expected a table of parameters, got {params!r}")
        if name in AGGREGATE_SCHEMAS:
            AGGREGATE_SCHEMAS[name](params, f"aggregates.{name}")
            continue
        if name not in federated.AGGREGATES:
            raise ScenarioError(f"aggregates.{name}: unknown aggregate method {name!r}; allowed: "
                                f"{', '.join([*federated.AGGREGATES, *AGGREGATE_SCHEMAS])}")
        try:
            for combo in sweep(params, federated.AGGREGATES.get(name).list_valued):
                federated.validate(name, combo)
        except ValueError as err:
            raise ScenarioError(f"aggregates.{name}: {err}") from None


def _validate_federation(scenario: Scenario) -> None:
    fed = scenario.federation
    if fed.min_clients > fed.num_clients:
        raise ScenarioError(f"federation.min_clients = {fed.min_clients} is above federation.num_clients = "
                            f"{fed.num_clients}")
    if fed.participation.min_sampled > fed.num_clients:
        raise ScenarioError(f"federation.participation.min_sampled = {fed.participation.min_sampled} is above "
                            f"federation.num_clients = {fed.num_clients}")
    sa = fed.secure_aggregation
    if sa.enabled and not (sa.max_records and sa.max_norm):
        raise ScenarioError("federation.secure_aggregation: max_records and max_norm must be > 0 when enabled "
                            "(public bounds on one client's records and an embedding's L2 norm: they fix the scale "
                            "every client and the server agree on)")
    if sa.num_shares and sa.reconstruction_threshold >= sa.num_shares:
        raise ScenarioError(f"federation.secure_aggregation.reconstruction_threshold = {sa.reconstruction_threshold} "
                            f"must be below num_shares = {sa.num_shares}")
    if sa.num_shares > fed.num_clients:
        raise ScenarioError(f"federation.secure_aggregation.num_shares = {sa.num_shares} is above "
                            f"federation.num_clients = {fed.num_clients}")
    if sa.enabled and fed.num_clients * sa.quantization_range >= 2 ** 32:
        raise ScenarioError(f"federation.secure_aggregation.quantization_range = {sa.quantization_range}: "
                            f"num_clients x quantization_range must be below 2**32 (SecAgg+'s modulus), so at most "
                            f"{(2 ** 32 - 1) // fed.num_clients} with {fed.num_clients} clients")
    for i, fault in enumerate(fed.faults):
        if not isinstance(fault, dict):
            raise ScenarioError(f"federation.faults[{i}]: expected a table with client, phase, kind")
        fc = _build(FaultConfig, fault, f"federation.faults[{i}]")
        if fc.client >= fed.num_clients:
            raise ScenarioError(f"federation.faults[{i}].client = {fc.client}: clients are 0..{fed.num_clients - 1}")


def _validate_online(scenario: Scenario) -> None:
    from fedsim import anonymizers
    from fedsim.online.corruptions import parse_domain

    on = scenario.online
    if on.domains and on.setting != "domain_shift":
        raise ScenarioError('online.domains applies only to online.setting = "domain_shift"')
    if on.domains and len(on.domains) != on.rounds:
        raise ScenarioError(f"online.domains lists {len(on.domains)} domains; online.rounds = {on.rounds} "
                            "needs one per round (or leave it empty for the default schedule)")
    for i, text in enumerate(on.domains):
        if not isinstance(text, str):
            raise ScenarioError(f"online.domains[{i}] = {text!r}: expected a string like \"gaussian_noise:3\"")
        try:
            parse_domain(text)
        except ValueError as err:
            raise ScenarioError(f"online.domains[{i}]: {err}") from None
    if on.rounds:
        shared = [m for m, _ in scenario.anonymizer_grid() if anonymizers.needs_shared_state(m)]
        if shared:
            raise ScenarioError(f"anonymizers.{shared[0]} cannot run in online rounds: its shared transform is "
                                "estimated once from every client's whole data set; use it with online.rounds = 0")


def load_scenario(path: str | Path | None = None, overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate a scenario; every problem names the file and key."""
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ScenarioError(f"{source}: no such scenario file")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ScenarioError(f"{source}: not valid TOML: {err}") from None
        raw.setdefault("name", p.stem)
    try:
        for assignment in overrides or []:
            apply_override(raw, assignment)
        scenario = _build(Scenario, raw)
        validate(scenario)
    except ScenarioError as err:
        raise ScenarioError(f"{source}: {err}") from None
    return scenario


def to_toml(data: dict[str, Any]) -> str:
    """Write a resolved scenario back as TOML (the subset the schema uses)."""
    lines: list[str] = []

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if isinstance(v, dict):  # a table inside a list (federation.faults): an inline table
            return "{" + ", ".join(f"{k} = {fmt(x)}" for k, x in v.items()) + "}"
        return repr(v)

    def emit(table: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and (scalars or not subtables):
            lines.append(f"\n[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {fmt(v)}")
        for k, v in subtables.items():
            emit(v, f"{prefix}.{k}" if prefix else k)

    emit(data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


__all__ = ["Scenario", "ScenarioError", "load_scenario", "apply_override", "to_toml"]


def from_dict(raw: dict[str, Any]) -> Scenario:
    """Rebuild a resolved scenario (e.g. one shipped to a Flower app) without re-validating."""
    return _build(Scenario, copy.deepcopy(raw))


def scenario_for_run(bound: dict[str, Any] | None, run_config: dict[str, Any]) -> Scenario:
    """The scenario a Flower app should run.

    Under ``run_simulation`` the apps are built by a factory bound to the resolved
    scenario and ``run_config`` is empty; under ``flwr run`` nothing is bound and the
    ``scenario`` key of ``[tool.flwr.app.config]`` (or ``--run-config``) names the file.
    """
    if bound is not None:
        return from_dict(bound)
    path = run_config.get("scenario")
    if not path:
        raise ScenarioError("run_config has no 'scenario' key naming a scenario file")
    p = Path(str(path))
    if not p.is_absolute() and not p.exists():
        p = Path(__file__).resolve().parents[1] / p  # relative to a source checkout
    return load_scenario(p)
