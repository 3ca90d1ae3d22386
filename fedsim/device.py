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
