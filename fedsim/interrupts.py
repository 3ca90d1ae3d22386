"""Ctrl-C and SIGTERM stop a run within seconds, and take its Ray processes with it.

Python delivers signals to the main thread only, and Flower's ``run_simulation`` blocks the
thread that calls it until every Flower thread has ended, so a Ctrl-C there waits for the
whole run.  :func:`run_interruptibly` therefore runs the simulation in a worker thread while
the main thread waits in short slices; a SIGINT or SIGTERM (made a
:class:`KeyboardInterrupt` by :func:`signals_as_interrupts`) then stops Flower's loops and
this job's actors, shuts Ray down (every process this driver started: raylet, GCS,
workers) and propagates, so the run folder is kept as ``-failed`` with its log.
:func:`deferred_interrupts` keeps a signal from cutting a short critical step (the
clean-up, renaming a finished run folder) in half.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
POLL_S = 0.5  # how often the waiting main thread looks for a signal
STOP_WAIT_S = 10.0  # how long an interrupted run's threads get to wind down


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM; ``signal_name`` says which (the exit status is 128 + its number)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (elsewhere: no-op).

    SIGTERM's default action kills the process at once (no cleanup, a hidden temporary run
    folder left behind); Ray's ``ray.init`` replaces it with ``sys.exit``; here both signals
    take the same clean path as a Ctrl-C.  Previous handlers come back on exit.
    """
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_interrupted) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_ACTIVE_DEFERRAL: list[int] | None = None


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block has finished, then raise :class:`Interrupted`.

    For short steps that must not be cut in half, such as renaming a finished run folder:
    the signal still takes effect, right after.  Nested uses and non-main threads just run
    the block.
    """
    global _ACTIVE_DEFERRAL
    if not _in_main_thread() or _ACTIVE_DEFERRAL is not None:
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in SIGNALS}
    _ACTIVE_DEFERRAL = pending
    try:
        yield
    finally:
        _ACTIVE_DEFERRAL = None
        for s, handler in previous.items():
            signal.signal(s, handler)
    if pending:
        handler = previous[signal.Signals(pending[0])]
        if callable(handler):
            handler(pending[0], None)  # what the signal would have done: ours raise Interrupted
        elif handler != signal.SIG_IGN:
            raise Interrupted(pending[0])


def run_interruptibly(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread, stoppable by SIGINT/SIGTERM within a second.

    Meant for ``flwr.simulation.run_simulation``: on an interrupt Flower's stop event is set,
    Ray is shut down (every process this driver started), the worker thread gets a few
    seconds to end, and :class:`Interrupted` (a KeyboardInterrupt) propagates.  ``fn``'s own
    exception propagates unchanged.  Outside the main thread ``fn`` simply runs here.
    """
    if not _in_main_thread():
        return fn(*args, **kwargs)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as err:  # handed to the main thread below
            outcome["error"] = err

    worker = threading.Thread(target=target, name="fedsim-simulation", daemon=True)
    with signals_as_interrupts():
        worker.start()
        try:
            while worker.is_alive():
                worker.join(POLL_S)
        except KeyboardInterrupt as err:
            name = getattr(err, "signal_name", "SIGINT")
            log.warning("%s: stopping the simulation and shutting Ray down", name)
            with deferred_interrupts():  # a second Ctrl-C must not cut the clean-up short
                stop_simulation(worker)
            raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def stop_simulation(worker: threading.Thread | None = None) -> None:
    """Stop Flower's simulation loops and this run's Ray actors, wait briefly for ``worker``,
    and shut Ray down.

    Flower's runtime threads wait in ``ray.get`` for the clients' replies, and a
    ``ray.shutdown()`` alone leaves them waiting forever (and the interpreter, which joins
    them at exit, with them).  Killing this job's actors makes those calls fail at once; the
    threads then see the stop event, and Flower tears its backend down itself.
    """
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.CRITICAL)  # the teardown's own errors are consequences, not news
    try:
        events = _flower_stop_events()
        for event in events:
            event.set()  # Flower's runtime threads poll it
        killed = _kill_job_actors()
        if worker is not None and (events or killed):  # otherwise nothing makes it end sooner
            deadline = time.monotonic() + STOP_WAIT_S
            while worker.is_alive() and time.monotonic() < deadline:
                worker.join(0.2)
            if worker.is_alive():
                log.warning("the simulation thread did not end within %.0f s (%d actors killed)", STOP_WAIT_S,
                            killed)
        shutdown_ray()
    finally:
        flwr_logger.setLevel(level)


def _kill_job_actors() -> int:
    """Kill the live actors of this driver's Ray job (Flower's client actors), and only
    those: on a shared cluster other jobs' actors are left alone."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return 0
    try:  # the actor table and kill-by-id are Ray internals (ray.kill wants a handle Flower keeps)
        from ray._private import state
        from ray._raylet import ActorID

        job = ray.get_runtime_context().get_job_id()
        core_worker = ray._private.worker.global_worker.core_worker
        killed = 0
        for actor_id, info in state.actors().items():
            if info.get("JobID") == job and info.get("State") not in ("DEAD", "DEPENDENCIES_UNREADY"):
                core_worker.kill_actor(ActorID.from_hex(actor_id), True)
                killed += 1
        return killed
    except Exception as err:  # fall back to ray.shutdown() alone
        log.debug("could not kill this job's actors: %s", err)
        return 0


def _flower_stop_events() -> list[threading.Event]:
    """The stop events Flower's simulation threads were started with.

    ``run_simulation`` creates its stop event locally and hands it only to its own threads;
    a thread's arguments are the one place it can be reached from outside.
    """
    events = []
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)
        if target is None or not getattr(target, "__module__", "").startswith("flwr."):
            continue
        values = list(getattr(thread, "_args", ())) + list(getattr(thread, "_kwargs", {}).values())
        events.extend(v for v in values if isinstance(v, threading.Event))
    return events


def shutdown_ray() -> None:
    """``ray.shutdown()`` when this process has Ray up: a local instance it started goes away
    with all its processes (raylet, GCS, workers); a cluster it joined is only left."""
    import sys

    ray = sys.modules.get("ray")  # never import Ray just to find it was not running
    if ray is None or not ray.is_initialized():
        return
    try:
        ray.shutdown()
    except Exception as err:  # shutting down after an interrupt must not hide the interrupt
        log.warning("ray.shutdown() failed: %s", err)
