"""Where suite jobs run: one interface, a local and a Ray implementation.

An :class:`Executor` takes :class:`~isnas_fast.suite.methods.JobInput` s and
yields each job's outcome as it finishes; it never writes to the suite
folder -- the runner (the driver) alone does, so a row is written once, by
one process.

* :class:`LocalExecutor` -- jobs in this process (per-job progress bars;
  ``batch > 1`` trains the full-size runs of several jobs together, see
  :func:`~isnas_fast.suite.methods.train_together`), or ``workers``
  processes on this machine with ``cores // workers`` torch threads each
  (workers x threads never exceeds the cores: oversubscribed DIP steps run
  up to 20x slower) and, on a machine with several GPUs, one GPU each.
* :class:`RayExecutor` -- each job a Ray task (``num_gpus=1`` on a cluster
  with GPUs, else ``num_cpus=threads``), retried when its worker is lost;
  connects to ``address`` or starts a local Ray instance.

A job's numbers depend on its seed and its torch thread count only, not on
which worker ran it: the same ``threads`` gives the same rows everywhere.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import torch

from ..device import resolve_device
from ..errors import InputError
from .methods import (JobFailure, JobInput, JobOutcome, Plan, RunRecord, batchable, finish_job, plan_fixed,
                      run_job, torch_threads, train_together)

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "Completed", "cpu_cores"]

Outcome = Union[JobOutcome, JobFailure]
Completed = tuple[JobInput, Outcome]


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _attempt(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or a :class:`JobFailure` naming what it raised (the suite goes on)."""
    try:
        return fn(*args)
    except Exception as e:  # one job's failure must not end the others
        return JobFailure(_one_line(e))


def _windowed(inputs: Iterable[JobInput], submit: Callable[[JobInput], Any],
              collect: Callable[[dict], Iterator[Completed]], window: int) -> Iterator[Completed]:
    """Keep at most ``window`` jobs submitted (inputs hold images: not all at once)."""
    in_flight: dict[Any, JobInput] = {}
    for inp in inputs:
        while len(in_flight) >= window:
            yield from collect(in_flight)
        in_flight[submit(inp)] = inp
    while in_flight:
        yield from collect(in_flight)


class Executor(ABC):
    """Runs suite jobs and yields ``(input, outcome)`` in the order they finish."""

    name = "executor"

    def __init__(self, threads: int):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InputError(f"threads must be a positive integer, got {threads!r}")
        #: torch intra-op threads of every job
        self.threads = threads

    @property
    def single_process(self) -> bool:
        """Whether jobs run in this process (then they may show their own progress bars)."""
        return False

    @abstractmethod
    def run(self, inputs: Iterable[JobInput], device: str) -> Iterator[Completed]:
        """Run every job of ``inputs`` on ``device`` (``auto``, ``cpu``, ``cuda``); yield outcomes as they finish."""

    def describe(self) -> dict:
        """How the jobs ran, for the summary."""
        return {"executor": self.name, "threads": self.threads}


class LocalExecutor(Executor):
    """Jobs on this machine: in this process (``workers=1``) or in ``workers`` processes.

    ``threads``: torch threads per job (default ``cores // workers``; more
    than the cores in all is refused).  ``batch``: with one worker, train
    the full-size runs of up to ``batch`` jobs together (an ``isnas`` job's
    scoring and cohort stage run on their own, its pick joins a group).
    """

    name = "local"

    def __init__(self, workers: int = 1, threads: Optional[int] = None, batch: int = 1):
        for what, v in (("workers", workers), ("batch", batch)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{what} must be a positive integer, got {v!r}")
        if batch > 1 and workers > 1:
            raise InputError("--batch trains jobs together in one process: use it with --workers 1")
        cores = cpu_cores()
        if threads is None:
            threads = max(1, cores // workers)
        # GPU workers mostly wait on their GPU; CPU workers must not share cores.
        if isinstance(threads, int) and workers * threads > cores and not torch.cuda.is_available():
            raise InputError(f"{workers} worker(s) x {threads} thread(s) exceed the {cores} CPU cores "
                             "(oversubscribed DIP steps run many times slower); lower --threads or --workers")
        super().__init__(threads)
        self.workers, self.batch = workers, batch

    @property
    def single_process(self) -> bool:
        return self.workers == 1

    def describe(self) -> dict:
        return {**super().describe(), "workers": self.workers, "batch": self.batch}

    def run(self, inputs: Iterable[JobInput], device: str) -> Iterator[Completed]:
        if self.workers > 1:
            yield from self._processes(inputs, device)
        elif self.batch > 1:
            yield from self._together(inputs)
        else:
            for inp in inputs:
                yield inp, _attempt(run_job, inp)

    def _together(self, inputs: Iterable[JobInput]) -> Iterator[Completed]:
        waiting: list[tuple[JobInput, Plan]] = []
        with torch_threads(self.threads):
            for inp in inputs:
                if not batchable(inp):  # several full-size runs of one search: the job alone
                    yield inp, _attempt(run_job, inp)
                    continue
                plan = _attempt(plan_fixed, inp)
                if isinstance(plan, JobFailure):
                    yield inp, plan
                    continue
                waiting.append((inp, plan))
                if sum(len(p.architectures) for _, p in waiting) >= self.batch:
                    yield from self._train(waiting)
                    waiting = []
            if waiting:
                yield from self._train(waiting)

    def _train(self, waiting: list[tuple[JobInput, Plan]]) -> Iterator[Completed]:
        """Train the runs of ``waiting`` in groups of ``batch``; yield each job when its runs are done."""
        waiting = [(plan.job_input(inp), plan) for inp, plan in waiting]
        runs = [(i, inp, a) for i, (inp, plan) in enumerate(waiting) for a in plan.architectures]
        records: dict[int, list[RunRecord]] = {i: [] for i in range(len(waiting))}
        failed: dict[int, JobFailure] = {}
        for start in range(0, len(runs), self.batch):
            group = runs[start:start + self.batch]
            trained = _attempt(lambda: train_together([(inp, a) for _, inp, a in group], quiet=group[0][1].quiet))
            for k, (i, _, _) in enumerate(group):
                if isinstance(trained, JobFailure):
                    failed[i] = trained
                else:
                    records[i].append(trained[k])
        for i, (inp, plan) in enumerate(waiting):
            if i in failed:
                yield inp, failed[i]
                continue
            device = str(resolve_device(inp.device))
            yield inp, _attempt(lambda: finish_job(inp, plan, records[i], device=device))

    def _processes(self, inputs: Iterable[JobInput], device: str) -> Iterator[Completed]:
        ctx = multiprocessing.get_context("spawn")  # fork after torch threads started is unsafe
        gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
        queue = None
        if gpus > 1:  # one GPU per worker
            queue = ctx.Queue()
            for i in range(self.workers):
                queue.put(i % gpus)
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,))

        def collect(in_flight: dict) -> Iterator[Completed]:
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for fut in done:
                inp = in_flight.pop(fut)
                yield inp, _future_outcome(fut)

        try:
            yield from _windowed(inputs, lambda inp: pool.submit(run_job, inp), collect, 2 * self.workers)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _init_worker(gpu_queue: Any) -> None:
    """Worker process start: claim one GPU (before CUDA is initialised in it)."""
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())


def _future_outcome(fut: Future) -> Outcome:
    exc = fut.exception()
    if isinstance(exc, BrokenProcessPool):
        raise InputError("a worker process died (out of memory?); the finished rows are kept: run the same "
                         "command again to finish the rest")
    if exc is not None:
        return JobFailure(_one_line(exc))
    return fut.result()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError('--executor ray needs Ray: pip install "isnas-fast[ray]"') from None
    return ray


class RayExecutor(Executor):
    """Each job a Ray task; results stream back to the driver.

    ``address``: a running cluster (``"auto"``, ``"HOST:PORT"``,
    ``"ray://HOST:10001"``); None starts a local Ray instance for the run
    (or uses the one this process already started).  ``threads``: torch
    threads (and Ray CPUs) per CPU task; on a cluster with GPUs each task
    takes one GPU and one CPU instead.  ``max_retries``: how often a job
    whose worker died is run again.  The workers need ``isnas-fast``
    installed; they read nothing from the driver's disk.
    """

    name = "ray"

    def __init__(self, address: Optional[str] = None, threads: int = 1, max_retries: int = 3):
        super().__init__(threads)
        self.address, self.max_retries = address, max_retries

    def describe(self) -> dict:
        return {**super().describe(), "address": self.address or "local instance"}

    def run(self, inputs: Iterable[JobInput], device: str) -> Iterator[Completed]:
        ray = _import_ray()
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise InputError(f"cannot start or reach Ray at {self.address or 'a local instance'}: "
                                 f"{_one_line(e)}") from None
        try:
            resources = ray.cluster_resources()
            use_gpu = device != "cpu" and resources.get("GPU", 0) >= 1
            if device.startswith("cuda") and not use_gpu:
                raise InputError("--device cuda: the Ray cluster has no GPU")
            if not use_gpu and self.threads > resources.get("CPU", 0):
                raise InputError(f"--threads {self.threads} is more than the Ray cluster's "
                                 f"{resources.get('CPU', 0):g} CPUs")
            options = {"num_gpus": 1, "num_cpus": 1} if use_gpu else {"num_cpus": self.threads}
            task = ray.remote(run_job).options(max_retries=self.max_retries, retry_exceptions=False, **options)
            slots = resources["GPU"] if use_gpu else resources.get("CPU", 1) // self.threads
            job_device = "cuda" if use_gpu else "cpu"  # Ray makes the task's GPU its cuda:0

            def collect(in_flight: dict) -> Iterator[Completed]:
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    inp = in_flight.pop(ref)
                    try:
                        outcome: Outcome = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        outcome = JobFailure(_one_line(e.cause if e.cause is not None else e))
                    except ray.exceptions.RayError as e:
                        outcome = JobFailure(f"lost after {self.max_retries} retries: {_one_line(e)}")
                    yield inp, outcome

            yield from _windowed((replace(inp, device=job_device) for inp in inputs), task.remote, collect,
                                 max(2, 2 * int(slots)))
        finally:
            if started:
                ray.shutdown()
