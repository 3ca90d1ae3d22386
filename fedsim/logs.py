"""Logging set-up: fedsim's own messages at INFO, other libraries' only when they warn.

Flower prints its own console lines, so the console handler skips ``flwr`` records;
the run's ``log.txt`` keeps them (INFO and up) for the record.
"""

from __future__ import annotations

import logging
import warnings

FORMAT = "%(levelname)s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LevelByOrigin(logging.Filter):
    """Pass fedsim records at ``own_level``, Flower's at ``flwr_level``, the rest at WARNING."""

    def __init__(self, own_level: int, flwr_level: int | None) -> None:
        super().__init__()
        self.own_level, self.flwr_level = own_level, flwr_level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "fedsim" or record.name.startswith("fedsim."):
            return record.levelno >= self.own_level
        if record.name == "flwr" or record.name.startswith("flwr."):
            return self.flwr_level is not None and record.levelno >= self.flwr_level
        return record.levelno >= logging.WARNING


class DropRunSimulationDeprecation(logging.Filter):
    """fedsim calls Flower's ``run_simulation`` on purpose (see flower-notes §2.1);
    its deprecation notice would only tell fedsim users to do something else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`run_simulation` function is deprecated" not in record.getMessage()


def setup_console(verbose: bool = False) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(LevelByOrigin(logging.DEBUG if verbose else logging.INFO, logging.DEBUG if verbose else None))
    root.addHandler(handler)
    logging.getLogger("flwr").addFilter(DropRunSimulationDeprecation())
    # Ray's notice about a future change of CUDA_VISIBLE_DEVICES handling; fedsim requests
    # GPUs explicitly (num_gpus > 0 only with CUDA), so today's behaviour is the one we want.
    warnings.filterwarnings("ignore", message=".*RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO.*", category=FutureWarning)


def file_handler(path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.addFilter(LevelByOrigin(logging.INFO, logging.INFO))
    return handler
