"""Start Ray for a fedsim driver, before Flower would, so that its workers run this fedsim.

``ray.init`` puts the driver's working directory first on every worker's ``sys.path`` (Ray
2.55: ``JobConfig._py_driver_sys_path``, applied by ``ray._raylet.maybe_initialize_job_config``),
so a run started from a folder that holds another fedsim checkout would run that checkout's
client code while the driver runs the installed one.  Flower cannot prevent it: it calls
``ray.init(runtime_env=..., **init_args)`` with ``init_args`` passed through JSON, so neither a
``runtime_env`` nor a ``JobConfig`` fits in there.  Flower's backend skips ``ray.init`` when Ray
is already up, so fedsim starts Ray itself, with the same arguments, giving the workers this
process's ``sys.path`` (as Flower does, through ``PYTHONPATH``) and no working directory.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

#: what Flower's run_simulation adds to init_args when it starts Ray itself
FLOWER_INIT_DEFAULTS = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": True}


def worker_sys_path() -> str:
    """This driver's ``sys.path`` as a PYTHONPATH, ``""`` (the working directory) made absolute:
    workers then resolve ``import fedsim`` exactly as the driver did."""
    paths = [os.path.abspath(p) if p in ("", ".") else p for p in sys.path]
    return os.pathsep.join(dict.fromkeys(paths))


def start_ray(init_args: dict[str, Any]) -> bool:
    """``ray.init(**init_args)`` unless Ray is up; workers import the driver's fedsim.

    Call it from the main thread (``ray.init`` installs a SIGTERM handler there, and warns
    elsewhere); the SIGTERM handler in force before is put back.  Returns True when this call
    started (or joined) Ray.  Flower's backend then uses this Ray and shuts it down at the end.
    """
    import ray
    from ray.job_config import JobConfig

    if ray.is_initialized():
        return False
    args = {**FLOWER_INIT_DEFAULTS, **init_args}
    # _client_job=True is the one JobConfig switch that skips adding the working directory
    # (Ray sets it for Ray Client jobs, whose driver code is not on the cluster's disk either);
    # in ray.init it only also skips uploading working_dir/py_modules, which fedsim never uses.
    job_config = JobConfig(_client_job=True)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(runtime_env={"env_vars": {"PYTHONPATH": worker_sys_path()}}, job_config=job_config, **args)
    except BaseException:  # e.g. Ctrl-C during start-up: take down what was started so far
        ray.shutdown()
        raise
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    log.debug("Ray started: %s", args)
    return True
