"""``run_suite``: a method comparison over a set of images, written as it goes.

The driver (this module) finds the images, writes the corrupted inputs,
hands the jobs still missing a row to an executor and writes each outcome
as it arrives: the restored PNG and the PSNR curve first, then the row
(:class:`~isnas_fast.suite.store.ResultStore`).  At the end it writes the
tables (:mod:`~isnas_fast.suite.summary`) and the plots
(:mod:`~isnas_fast.suite.plots`, when matplotlib is installed).  Running the
same call again skips the finished rows.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

from tqdm.auto import tqdm

from ..api import split_options
from ..device import resolve_device
from ..errors import InputError
from ..io import atomic_write_text, check_output_folder, load_image, save_image
from ..io.files import json_text, make_folder
from ..problem import resolve_task
from ..quality import psnr
from ..search import SearchSettings, settings_from_options
from ..tasks import Inpaint, Task
from . import plots, references
from .executors import Executor, LocalExecutor
from .images import ProblemFiles, Skipped, collect_images, load_problem, prepare_inputs
from .jobs import (Job, default_methods, flagless_settings, job_list, parse_methods, parse_seeds, rerun_command,
                   settings_hash, settings_record)
from .methods import JobFailure, JobInput, JobOutcome
from .store import ResultStore
from .summary import SummaryContext, SummaryTables, summarize, write_summary

__all__ = ["run_suite", "SuiteResults"]


@dataclass
class SuiteResults:
    """What :func:`run_suite` returns.

    ``rows``: the row of every job of this call that has one (from this run
    or an earlier one), in job order; ``failed``: job key -> why it failed
    (no row: running again retries it); ``skipped``: images that could not
    be used; ``tables``: the summary's tables; ``files``: what was written
    (name -> path).
    """

    folder: Path
    jobs: list[Job]
    rows: list[dict]
    tables: SummaryTables
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    ran: int = 0

    @property
    def complete(self) -> bool:
        """Whether every job has its row."""
        return len(self.rows) == len(self.jobs)


def _check_output_folder(out: Union[str, os.PathLike]) -> Path:
    return check_output_folder(out, "suite folder")


def _inputs(todo: Sequence[Job], folder: Path, files: dict[tuple[str, int], ProblemFiles],
            base: dict) -> Iterator[JobInput]:
    """Job inputs built lazily, each reading its files from ``inputs/`` (as a rerun by hand would)."""
    for job in todo:
        observed, mask, clean = load_problem(folder, files[(job.image, job.seed)])
        yield JobInput(job=job, observed=observed, mask=mask, clean=clean, **base)


def _write_outcome(folder: Path, inp: JobInput, outcome: JobOutcome, files: ProblemFiles, task: Task,
                   extra: dict) -> dict:
    """Write a job's image and curve (atomically), and return its full row."""
    job = inp.job
    restored = f"restored/{job.image}/{job.method}-seed{job.seed}.png"
    make_folder((folder / restored).parent, "results folder", parents=True)
    save_image(outcome.output, folder / restored, bit_depth=files.depth)
    row = {"job": job.key, **outcome.row}
    # PSNR of the saved file: what anyone recomputes from the PNGs (rounded to its bit depth).
    saved, clean = load_image(folder / restored), load_image(folder / files.clean)
    row["psnr_png"] = float(psnr(saved, clean, y_channel=bool(row["psnr_y_channel"]))[0])
    if outcome.curves:
        curve = f"curves/{job.image}/{job.method}-seed{job.seed}.json"
        make_folder((folder / curve).parent, "results folder", parents=True)
        atomic_write_text(folder / curve, json_text(outcome.curves, indent=None))
        row["curve"] = curve
    arch = None if job.method == "isnas" else row["architecture"]
    row.update(restored=restored, input=files.observed, mask=files.mask, ground_truth=files.clean,
               corruption_seed=files.corruption_seed, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra)
    if job.reference:
        params = task.params()
        row["rerun"] = references.rerun_command(
            job.method, observed=files.observed, mask=files.mask, sigma=params.get("sigma"),
            factor=params.get("factor"), output=f"rerun-{job.image}-{job.method}-seed{job.seed}.png",
            bit_depth=files.depth)
        return row
    row["rerun"] = rerun_command(observed=files.observed, clean=files.clean, mask=files.mask,
                                 task=task, preset=inp.preset, settings=inp.settings, seed=job.seed,
                                 architecture=arch, device=row["device"].split(":")[0], threads=inp.threads,
                                 output=f"rerun-{job.image}-{job.method}-seed{job.seed}.png")
    return row


def run_suite(
    images: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
    task: Union[str, Task],
    *,
    out: Union[str, os.PathLike],
    methods: Union[str, Sequence[str], None] = None,
    seeds: Union[int, str, Sequence[int]] = 1,
    preset: str = "quick",
    executor: Optional[Executor] = None,
    device: str = "auto",
    plot: bool = True,
    tie: float = 0.0,
    quiet: bool = False,
    log: Optional[Callable[[str], None]] = None,
    **options: Any,
) -> SuiteResults:
    """Run ``methods`` on every image of ``images`` for every seed; write the
    rows, the summary tables and the plots into ``out``.

    ``images``: folders (PNG, JPEG, TIFF, BMP), image paths, or
    ``"builtin:paper"``; each image is the ground truth, corrupted per seed
    by ``task`` (``"denoise"``/``"inpaint"``/``"sr"`` with ``sigma``, ``p``,
    ``factor`` among ``options``).  ``methods``: of ``isnas``, ``nasdip``,
    ``dip-skip``, ``random``, ``cohort-best`` (an oracle that uses the
    ground truth) and the tasks' references ``bm3d`` (denoise), ``bicubic``
    (sr), ``biharmonic`` (inpaint), classical methods without training
    (:mod:`~isnas_fast.suite.references`); None: ``isnas``, ``nasdip``,
    ``dip-skip``, ``random`` and the task's reference when its package is
    installed.  ``seeds``: a count N (seeds 0..N-1) or a list.
    ``options``: the search knobs of ``restore`` (``width``,
    ``iterations``, ``early_stopping``, ...); every method trains with the
    same final-run knobs.  ``executor``: a
    :class:`~isnas_fast.suite.executors.LocalExecutor` (default: this
    process) or :class:`~isnas_fast.suite.executors.RayExecutor`.  ``tie``:
    PSNR differences (dB) up to this count as ties in the paired
    comparison.  ``plot``: also draw the plots (needs matplotlib).

    ``out`` is created if missing (its parent must exist).  If it holds the
    results of this suite, finished jobs are skipped; other settings there
    raise :class:`~isnas_fast.errors.InputError`.  Unusable images are
    skipped with a warning.
    """
    say = log or (lambda msg: None)
    tk, settings, knobs, method_list, seed_list = _suite_plan(task, preset, methods, seeds, device, options)
    executor = executor or LocalExecutor()
    folder = _check_output_folder(out)
    found, skipped = collect_images(images)
    for s in skipped:
        warnings.warn(f"skipping image {s.source}: {s.reason}", stacklevel=2)
    make_folder(folder, "suite folder")
    record = settings_record(tk, preset, settings)
    store = ResultStore(folder)
    with store.locked():
        store.check_settings(record, {im.name: {"source": im.source, "sha256": im.sha256} for im in found})
        done = store.rows()
        files = {(im.name, s): prepare_inputs(im, tk, s, folder) for s in seed_list for im in found}
        jobs = job_list([im.name for im in found], method_list, seed_list)
        todo = [j for j in jobs if j.key not in done]
        say(f"{len(jobs)} job(s) ({len(found)} image(s) x {len(method_list)} method(s) x {len(seed_list)} "
            f"seed(s)); {len(jobs) - len(todo)} already done, {len(todo)} to run in {folder}")
        base = dict(task=tk.name, task_params={k: v for k, v in tk.params().items() if v is not None},
                    preset=preset, options=knobs, device=device, threads=executor.threads,
                    quiet=quiet or not executor.single_process)
        extra = {"settings": settings_hash(record), "executor": executor.describe()}
        failed = _run_jobs(executor, _inputs(todo, folder, files, base), device, folder=folder, files=files, task=tk,
                           extra=extra, store=store, done=done, total=len(jobs), initial=len(jobs) - len(todo),
                           quiet=quiet)
        rows = [done[j.key] for j in jobs if j.key in done]
        context = SummaryContext(task=tk, preset=preset, settings=settings, methods=method_list,
                                 images=[im.name for im in found], seeds=seed_list, skipped=skipped,
                                 failed=failed, missing=[j.key for j in jobs if j.key not in done], tie=tie)
        tables = summarize(rows, context)
        written = write_summary(folder, tables, context)
        if plot:
            written.update(plots.draw(folder, rows, context, say))
    return SuiteResults(folder=folder, jobs=jobs, rows=rows, tables=tables, failed=failed, skipped=skipped,
                        files=written, ran=len(todo) - len(failed))


def _suite_plan(task: Union[str, Task], preset: str, methods: Union[str, Sequence[str], None],
                seeds: Union[int, str, Sequence[int]], device: str,
                options: dict) -> tuple[Task, SearchSettings, dict, list[str], list[int]]:
    """The suite's task, settings, knob keywords, methods and seeds, checked before anything
    is written (a reference of another task or without its package, a device not present)."""
    knobs, task_params = split_options(options)
    tk = resolve_task(task, None, task_params)
    if isinstance(tk, Inpaint) and tk.mask is not None:
        raise InputError("a suite draws its own inpainting mask per image and seed: give p, not a mask")
    settings = settings_from_options(preset, knobs)
    method_list = parse_methods(default_methods(tk.name) if methods is None else methods)
    for m in method_list:
        references.check_reference(m, tk.name)  # a reference of another task, or its package missing
    seed_list = parse_seeds(seeds)
    resolve_device(device)  # fail now on a machine without the device asked for
    for value in flagless_settings(settings, preset):
        warnings.warn(f"{value} has no command-line option: the rows' rerun commands use the preset's detector",
                      stacklevel=3)
    return tk, settings, knobs, method_list, seed_list


def _run_jobs(executor: Executor, inputs: Iterator[JobInput], device: str, *, folder: Path,
              files: dict[tuple[str, int], ProblemFiles], task: Task, extra: dict, store: ResultStore,
              done: dict[str, dict], total: int, initial: int, quiet: bool) -> dict[str, str]:
    """Run the jobs of ``inputs`` on ``executor``, writing each finished job's files and row
    (into ``store`` and ``done``) as it comes; returns the failed jobs' messages by job key."""
    failed: dict[str, str] = {}
    bar = tqdm(total=total, initial=initial, desc="suite", unit="job", disable=True if quiet else None,
               dynamic_ncols=True)
    try:
        for inp, outcome in executor.run(inputs, device):
            if isinstance(outcome, JobFailure):
                failed[inp.job.key] = outcome.message
                warnings.warn(f"job {inp.job.key} failed: {outcome.message}", stacklevel=3)
            else:
                row = _write_outcome(folder, inp, outcome, files[(inp.job.image, inp.job.seed)], task, extra)
                store.append(row)
                done[inp.job.key] = row
                bar.set_postfix_str(f"{inp.job.key} {row['psnr']:.2f} dB", refresh=False)
            bar.update(1)
    finally:
        bar.close()
    return failed
