"""What a run ran on: versions and hardware, recorded in results.json for the report."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

PACKAGES = ("fedsim", "torch", "torchvision", "flwr", "ray", "numpy", "scikit-learn", "timm", "faiss-cpu")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Python, platform, package versions, CPU, accelerator."""
    import torch

    from fedsim.device import bf16_autocast_ok

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if cuda else None,
        "bf16_cpu": bf16_autocast_ok(torch.device("cpu")),
    }
