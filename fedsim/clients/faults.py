"""Test-only fault injection (``[[federation.faults]]``): a client that raises, answers
too late or sends a malformed reply, so real Flower + Ray tests can show that the server
rejects it with a reason, leaves the client out and completes the run.

``malformed`` replies (``how``): ``nan`` (NaN in the release), ``dim`` (another embedding
dimension), ``missing`` (no training labels), ``labels`` (a label above the class count),
``negative_labels``, ``rows`` (10x the rows the client owns), ``label_length`` (one label
too few), ``partition`` (another client's partition id).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict

from fedsim.config import FaultConfig, Scenario

log = logging.getLogger(__name__)


def find(scenario: Scenario, pid: int, phase: str, index: int, round_index: int) -> FaultConfig | None:
    for f in scenario.federation.fault_list():
        if (f.client, f.phase) == (pid, phase) and f.index in (-1, index) and f.round in (-1, round_index):
            return f
    return None


def before(fault: FaultConfig | None, scenario: Scenario) -> None:
    """``raise`` and ``timeout`` faults act before the handler's work."""
    if fault is None:
        return
    if fault.kind == "raise":
        raise RuntimeError(f"injected fault: client {fault.client} raises in {fault.phase}")
    if fault.kind == "timeout":
        delay = scenario.federation.round_timeout + 5.0
        log.warning("injected fault: client %d sleeps %.0fs in %s", fault.client, delay, fault.phase)
        time.sleep(delay)


def corrupt(content: RecordDict, fault: FaultConfig | None) -> RecordDict:
    """The reply with the ``malformed`` fault applied (other kinds: unchanged)."""
    if fault is None or fault.kind != "malformed":
        return content
    if "info" in content and fault.how == "partition":
        content["info"]["partition-id"] = int(content["info"]["partition-id"]) + 1
        return content
    name = next(iter(content.array_records))
    arrays = {k: v.numpy() for k, v in content[name].items()}
    x_key = "x_train" if "x_train" in arrays else next(iter(arrays))
    x = np.array(arrays[x_key], dtype=np.float32 if arrays[x_key].dtype == np.float32 else arrays[x_key].dtype)
    y = arrays.get("y_train")
    if fault.how == "nan":
        x.reshape(-1)[:1] = np.nan
    elif fault.how == "dim":
        x = np.ascontiguousarray(x[:, :-1]) if x.ndim == 2 else x[:-1]
    elif fault.how == "missing":
        arrays.pop("y_train" if y is not None else x_key)
    elif fault.how in ("labels", "negative_labels") and y is not None:
        y = y.copy()
        y[:1] = -1 if fault.how == "negative_labels" else 10_000
    elif fault.how == "rows":
        x = np.concatenate([x] * 10)
        y = None if y is None else np.concatenate([y] * 10)
    elif fault.how == "label_length" and y is not None:
        y = y[:-1]
    if fault.how != "missing":
        arrays[x_key] = x
        if y is not None:
            arrays["y_train"] = y
    content[name] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})
    return content
