"""Pick the compute device and thread count deliberately (Ray sets OMP_NUM_THREADS per client)."""

from __future__ import annotations

import functools
import logging
import os

import torch

log = logging.getLogger(__name__)


def best_device(preference: str = "auto") -> torch.device:
    """``auto`` takes CUDA when this process can see a GPU, else the CPU."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available in this process")
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(preference)


def set_threads(num_cpus: float | None = None) -> int:
    """Use the CPUs granted to this process (Ray's num_cpus), at least one."""
    n = int(num_cpus) if num_cpus else int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    n = max(1, n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def bf16_autocast_ok(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with AMX/AVX512-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return _cpu_has_bf16_units()


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16_units() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


#: /proc/cpuinfo flags that decide which matrix-product path is fastest on a CPU
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, object]:
    """The CPU's model name, architecture and those of ``CPU_FEATURES`` it has (from
    /proc/cpuinfo; elsewhere the model is ``platform.processor()`` and no flags are known)."""
    import platform

    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:  # the first core's block: every core lists the same
                name, _, value = line.partition(":")
                if name.strip() == "model name" and model is None:
                    model = value.strip()
                elif name.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"model": model or platform.processor() or platform.machine(), "arch": platform.machine(),
            "features": [f for f in CPU_FEATURES if f in flags]}


def cpu_kind() -> str:
    """The CPU's matrix-product class: ``amx`` (AMX-BF16 tiles), ``avx512_bf16``, ``avx512``
    (no bf16 units: bf16 products are emulated, several times slower than fp32), ``avx2`` or
    ``other``."""
    features = set(cpu_info()["features"])
    for kind, needs in (("amx", "amx_bf16"), ("avx512_bf16", "avx512_bf16"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if needs in features:
            return kind
    return "other"


def cpu_signature() -> str:
    """What a timing measured on this CPU depends on: model, features, torch version and
    torch's thread count (a key for cached calibrations)."""
    info = cpu_info()
    return (f"{info['model']} | {info['arch']} | {','.join(info['features']) or '-'} | "
            f"torch {torch.__version__} | {torch.get_num_threads()} threads")
