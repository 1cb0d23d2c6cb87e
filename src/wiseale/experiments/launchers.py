"""Launchers: where a reproduction's training units run (docs/experiments.md, "Many machines").

Each launcher takes the units that are not finished and runs each one's call (a training
unit's :func:`units.run_unit`, a measure unit's :func:`units.run_measures`) through an existing
engine, waits, and returns the units that failed with their errors; the others finish
whatever happens to one. ``local``: N processes on this machine
(concurrent.futures, spawned), spread over the visible GPUs when the units train on CUDA.
``submitit``: Slurm jobs (an array of them) through submitit's AutoExecutor, or its local and
debug executors; a pre-empted or timed-out job is requeued and resumes from its last
checkpoint. ``ray``: Ray tasks on ``ray.init()`` (this machine) or an existing cluster's
address. Without a launcher, ``reproduce`` trains the runs one after another in its own
process, as before.
"""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wiseale.errors import WisealeError
from wiseale.experiments.units import MeasureUnit, Unit
from wiseale.extras import require

AnyUnit = Unit | MeasureUnit

__all__ = ["Failure", "Launcher", "LocalLauncher", "RayLauncher",
           "SubmititLauncher"]


@dataclass(frozen=True)
class Failure:
    """A unit that raised: its run directory, log and the error's last line."""

    unit: AnyUnit
    error: str

    def __str__(self) -> str:
        return f"{self.unit.run_dir} ({self.error}; its output: {self.unit.log})"


def _invoke(call: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    """A unit's call (its function and arguments), run where the engine puts it."""
    function, arguments = call
    return function(*arguments)


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"


class Launcher:
    """Runs units; ``run`` returns those that failed."""

    name = ""

    def run(self, units: Sequence[AnyUnit]) -> list[Failure]:
        raise NotImplementedError


@dataclass
class LocalLauncher(Launcher):
    """``jobs`` units at a time on this machine, each in its own spawned process; with
    ``gpus`` (CUDA device ids), worker k sees only ``gpus[k % len(gpus)]`` as its GPU."""

    jobs: int
    gpus: tuple[str, ...] = ()
    name = "local"

    def run(self, units: Sequence[AnyUnit]) -> list[Failure]:
        with self.pool() as pool:
            futures = {pool.submit(_invoke_local, unit.call()): unit for unit in units}
            return _failures((unit, future.exception) for future, unit in futures.items())

    def pool(self) -> concurrent.futures.ProcessPoolExecutor:
        """The ``jobs`` worker processes (spawned: no forked torch state), each pinned to its
        GPU before it can initialise CUDA, and each ending when this process is gone."""
        context = multiprocessing.get_context("spawn")
        ids = None
        if self.gpus:
            ids = context.Queue()
            for gpu in gpu_per_worker(self.jobs, self.gpus):
                ids.put(gpu)
        return concurrent.futures.ProcessPoolExecutor(
            self.jobs, mp_context=context, initializer=_local_worker_start,
            initargs=(os.getpid(), ids))


PARENT_POLL_SECONDS = 1.0
_running = threading.Lock()  # held while a local worker runs a unit
_orphaned = threading.Event()


def _invoke_local(call: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    """:func:`_invoke` in a local worker; none once the worker is orphaned."""
    with _running:
        if _orphaned.is_set():
            raise WisealeError("the reproduction that started this unit is gone")
        return _invoke(call)


def _local_worker_start(parent: int, ids: Any) -> None:
    """A local worker's start: its GPU (where ``ids`` is a queue of them) and a thread that
    ends it when ``parent`` is gone (:func:`_stop_when_orphaned`)."""
    if ids is not None:
        _pin_gpu(ids)
    threading.Thread(target=_stop_when_orphaned, args=(parent,), daemon=True).start()


def _stop_when_orphaned(parent: int) -> None:
    """End this worker once the reproduction that started it is gone: a killed parent does
    not end its pool's workers, which would finish their unit and then wait on the pool's
    queue for ever. SIGTERM stops a training unit at its next step with its checkpoint
    (wiseale.training.interrupts; the same command resumes it) and ends any other; once the
    unit has returned, the worker exits."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    _orphaned.set()
    os.kill(os.getpid(), signal.SIGTERM)
    with _running:
        os._exit(128 + signal.SIGTERM)


def gpu_per_worker(jobs: int, gpus: Sequence[str]) -> list[str]:
    """The GPU of each of ``jobs`` workers: the ids in turn (several workers share one when
    there are more workers than GPUs)."""
    return [gpus[k % len(gpus)] for k in range(jobs)]


def _pin_gpu(ids: Any) -> None:
    """A worker's start: take the next GPU id and make it the only one this process sees."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ids.get()


def visible_gpus() -> tuple[str, ...]:
    """The CUDA devices this process may use: $CUDA_VISIBLE_DEVICES's ids where it is set,
    else 0 ... torch.cuda.device_count() - 1."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return tuple(gpu.strip() for gpu in listed.split(",") if gpu.strip())
    import torch

    return tuple(str(k) for k in range(torch.cuda.device_count()))


@dataclass
class SubmititLauncher(Launcher):
    """One submitit job per unit, submitted as a job array, in ``folder``. ``cluster``:
    None (Slurm where it is installed, else local processes), ``slurm``, ``local`` or
    ``debug`` (in this process); ``parameters``: submitit's (``slurm_partition``,
    ``timeout_min``, ``gpus_per_node``, ``cpus_per_task``, ``mem_gb``, ...)."""

    folder: Path
    cluster: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    name = "submitit"

    def run(self, units: Sequence[AnyUnit]) -> list[Failure]:
        submitit = require("submitit", "the submitit launcher (--launcher submitit)")
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        try:
            executor.update_parameters(**self.parameters)
        except (NameError, TypeError, ValueError) as exc:  # a parameter submitit does not know
            raise WisealeError(f"submitit refused a parameter: {str(exc).splitlines()[0]}; fix "
                               "--slurm-config or the flags") from None
        calls = [_Requeued(unit.call()) for unit in units]
        with executor.batch():
            jobs = [executor.submit(call) for call in calls]
        return _failures((unit, job.exception) for job, unit in zip(jobs, units, strict=True))


class _Requeued:
    """A unit as a submitit checkpointable callable: when Slurm pre-empts or times out the
    job, submitit calls :meth:`checkpoint` and requeues the same call, which resumes the run
    from its last epoch checkpoint (run_unit resumes whatever it finds; run_measures takes
    only the measures not yet saved)."""

    def __init__(self, call: tuple[Callable[..., str], tuple[Any, ...]]) -> None:
        self.call = call

    def __call__(self) -> str:
        return _invoke(self.call)

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self)


@dataclass
class RayLauncher(Launcher):
    """One Ray task per unit asking for ``cpus`` CPUs (and ``gpus`` GPUs), on the cluster at
    ``address`` (None: a Ray started on this machine)."""

    address: str | None = None
    cpus: int = 1
    gpus: float = 0
    name = "ray"

    def run(self, units: Sequence[AnyUnit]) -> list[Failure]:
        ray = require("ray", "the Ray launcher (--launcher ray)")
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(_invoke)
            refs = [task.remote(unit.call()) for unit in units]
            return _failures((unit, functools.partial(_ray_exception, ray, ref))
                             for ref, unit in zip(refs, units, strict=True))
        finally:
            if started:
                ray.shutdown()


def _ray_exception(ray: Any, ref: Any) -> BaseException | None:
    """The exception of the Ray task ``ref`` (waiting for it), or None."""
    try:
        ray.get(ref)
    except Exception as exc:  # noqa: BLE001 -- reported as the unit's failure
        return exc
    return None


def _failures(outcomes: Any) -> list[Failure]:
    """(unit, a call that waits and returns its exception or None) -> the failed units."""
    failed = []
    for unit, exception in outcomes:
        exc = exception()
        if exc is not None:
            failed.append(Failure(unit, _last_line(exc)))
    return failed

