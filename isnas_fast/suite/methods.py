"""One suite job: a method run on one (image, seed), as a picklable function.

=============  ===============================================================
method         what is trained at full size
=============  ===============================================================
``isnas``      the search's pick (``restore`` without ``arch``)
``nasdip``     the task's NAS-DIP genotype (32-channel input code, as NAS-DIP)
``dip-skip``   the original DIP skip network (its fixed width 128)
``random``     one genotype drawn uniformly, seeded by (image, seed), from the
               candidate pool the search scores for that seed (the paper's
               "random model" control)
``cohort-best`` every member of the search's cohort (the first metric's); the
               row is the member with the best PSNR: an *oracle that uses the
               ground truth*, for analysis only
``bm3d``,      the task's reference (:mod:`~isnas_fast.suite.references`):
``bicubic``,   a classical method run on the job's input files, nothing
``biharmonic`` trained (:func:`run_reference_job`)
=============  ===============================================================

Every method trains with the same final-run knobs (``width``,
``iterations``, early stopping, precision; DIP-skip keeps its width).  One
job at a time goes through :func:`isnas_fast.restore` -- exactly what the
row's ``rerun`` command runs.  The full-size runs of several jobs (the
search's pick once its cohort stage has chosen it, and the fixed
architectures) can instead be trained together in one program
(:func:`plan_fixed`, :func:`train_together`): members of a group are
independent, so each follows the trajectory it would follow alone.

Workers (processes, Ray tasks) get a :class:`JobInput` with the images as
tensors and return a :class:`JobOutcome`; they never touch the suite folder.
"""
from __future__ import annotations

import contextlib
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator, Optional, Sequence, Union

import torch
from torch import Tensor

from ..api import baseline_input_channels, restore
from ..device import resolve_device
from ..dip import DIPResult, EarlyStopping
from ..genotype import Genotype
from ..network import resolve_architecture
from ..problem import prepare_problem, resolve_task
from ..result import RestoreResult
from ..search import (GroupMember, SearchSettings, candidate_list, genotype_seed,
                      rank_cohort, score_candidates, search_picks, settings_from_options, train_group)
from ..search.validation import selects_by_validation, with_fixed_network
from ..tasks import Observation, task_class
from ..versions import versions
from .jobs import METHOD_LABELS, Job
from .references import package_versions, run_reference

__all__ = ["JobInput", "RunRecord", "JobOutcome", "JobFailure", "Plan", "torch_threads", "plan_fixed", "batchable",
           "run_job", "run_reference_job", "train_together", "finish_job", "random_index", "versions"]

Architecture = Union[Genotype, str]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run a block with ``threads`` intra-op threads, restoring the caller's count after.

    The count is part of what a job's numbers depend on (on a CPU, how a
    convolution's sums are split), so every executor sets the job's own.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class JobInput:
    """Everything a job needs, picklable.

    ``observed``: the corrupted input (1, C, h, w) as read from the suite's
    ``inputs/`` file; ``mask``: (1, 1, h, w), 1 = known (inpainting);
    ``clean``: the cropped ground truth (1, C, H, W); all float32 in [0, 1].
    ``options``: the search knobs (API keywords of ``restore``);
    ``task_params``: ``sigma`` / ``p`` / ``factor``.  ``threads``: torch
    intra-op threads of the job; ``quiet``: no per-job progress bars.
    """

    job: Job
    task: str
    task_params: dict
    preset: str
    options: dict
    observed: Tensor
    mask: Optional[Tensor]
    clean: Tensor
    device: str = "auto"
    threads: int = 1
    quiet: bool = True

    @property
    def settings(self) -> SearchSettings:
        return settings_from_options(self.preset, self.options)

    def problem(self) -> tuple[Observation, Tensor]:
        """The observation and cropped ground truth, exactly as ``restore`` builds them."""
        tk = resolve_task(self.task, self.mask, self.task_params)
        obs, gt, _ = prepare_problem(self.observed, tk, ground_truth=self.clean)
        assert gt is not None
        return obs, gt

    def restore(self, arch: Optional[Architecture] = None) -> RestoreResult:
        """``isnas_fast.restore`` of this job (the search when ``arch`` is None)."""
        return restore(self.observed, self.task, self.preset, ground_truth=self.clean, mask=self.mask,
                       seed=self.job.seed, arch=arch, device=self.device, quiet=self.quiet,
                       **self.options, **self.task_params)


@dataclass
class RunRecord:
    """One full-size DIP run, without the network (light to send back).

    ``output``: the restored image (1, C, H, W) on the CPU; ``psnr`` (dB, as
    the task measures it: ``psnr_y_channel`` says whether on the Y channel)
    and ``ssim`` against the ground truth; ``curve``:
    PSNR (dB) of the smoothed output per step, ``curve_raw`` of the raw
    output; ``seconds``: training wall time (a share of the group's when
    trained together); ``trained_with``: how many runs trained in its group
    (1: alone); ``restarts``: each random start's entry when several were
    averaged; ``blended``: each blended run's entry (the pick's and its partner's);
    ``anchored``: the anchor, weight and starts when the starts' mean was shrunk toward one.
    """

    output: Tensor
    psnr: float
    ssim: float
    architecture: str
    genotype: str
    width: int
    in_channels: int
    iterations_run: int
    stopped_at: Optional[int]
    early_stopped: bool
    psnr_at_stop: Optional[float]
    curve: Optional[list[float]]
    curve_raw: Optional[list[float]]
    seconds: float
    precision: str
    compiled: bool
    psnr_y_channel: bool = False
    restarts: Optional[list] = None
    trained_with: int = 1
    blended: Optional[list] = None
    anchored: Optional[dict] = None


def _rounded(curve: Optional[list[float]]) -> Optional[list[float]]:
    return [round(v, 4) for v in curve] if curve else None


def _record(dip: DIPResult, output: Tensor, quality: tuple[float, float, bool], architecture: Architecture,
            genotype: str, width: int, in_channels: int, seconds: float) -> RunRecord:
    """``quality``: (PSNR, SSIM, whether the PSNR is on the Y channel), as the task measured them."""
    return RunRecord(
        output=output.float().cpu(), psnr=quality[0], ssim=quality[1], psnr_y_channel=quality[2],
        architecture=architecture if isinstance(architecture, str) else str(architecture), genotype=genotype,
        width=width, in_channels=in_channels, iterations_run=dip.iterations_run, stopped_at=dip.stopped_at,
        early_stopped=dip.early_stopped, psnr_at_stop=dip.psnr_at_stop,
        curve=_rounded(dip.psnr_curve), curve_raw=_rounded(dip.psnr_raw_curve), seconds=seconds,
        precision=dip.precision, compiled=dip.compiled, restarts=[dict(r) for r in dip.restarts] or None,
        blended=[dict(r) for r in dip.blended] or None, anchored=dict(dip.anchored) or None)


def _from_restore(res: RestoreResult, architecture: Architecture) -> RunRecord:
    assert res.psnr is not None and res.ssim is not None
    # res.tensor: what restore returns (and the rerun command writes), its PSNR and SSIM with it
    quality = (res.psnr, res.ssim, res.task.psnr_on_y(int(res.tensor.shape[1])))
    return _record(res.dip, res.tensor, quality, architecture, str(res.run.genotype),
                   res.run.width, res.run.in_channels, res.timings_s.get("final", 0.0))


@dataclass
class JobOutcome:
    """What a finished job sends back: its row fields, restored image (1, C, H, W)
    and the final run's PSNR curves (see :class:`RunRecord`)."""

    row: dict
    output: Tensor
    curves: dict = field(default_factory=dict)


@dataclass
class JobFailure:
    """A job that raised: one line saying why."""

    message: str


@dataclass
class Plan:
    """A fixed-architecture job before training: the architectures to train at
    full size, the method's own row fields and the seconds spent so far."""

    architectures: list[Architecture]
    fields: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def job_input(self, inp: "JobInput") -> "JobInput":
        """``inp`` with the knobs the plan decided (the validated search's stop start)."""
        return replace(inp, options={**inp.options, **self.options}) if self.options else inp


def random_index(image: str, seed: int, pool_size: int) -> int:
    """The ``random`` method's draw from a pool of ``pool_size``, seeded by (image, seed)."""
    g = torch.Generator().manual_seed(zlib.crc32(f"{image}|{seed}".encode()))
    return int(torch.randint(pool_size, (1,), generator=g))


def batchable(inp: JobInput) -> bool:
    """Whether the job's full-size runs can be trained beside other jobs' (an ``isnas``
    job with ``final="all"``, an ensemble or a blend restores several runs and goes alone, as
    does every job with restarts or an anchor; a
    reference trains nothing and goes alone)."""
    if inp.job.reference:
        return False
    settings = inp.settings
    if settings.restarts > 1 or inp.job.method == "isnas" and settings.anchor_for(inp.task):
        return False
    return inp.job.method != "isnas" or (settings.final == "first" and settings.ensemble == 1
                                         and settings.blend == "none")


def _stop_options(used: Optional[EarlyStopping], default: Optional[EarlyStopping]) -> dict:
    """The plan's options when the final run's stop differs from the settings' (the search's
    stop start): the summary records the stop the run used."""
    return {"early_stopping": used} if used != default else {}


def plan_fixed(inp: JobInput) -> Plan:
    """The architectures a job trains at full size, decided before training any:
    for ``isnas`` the search's pick (its scoring and cohort stage run here),
    for ``nasdip``, ``dip-skip``, ``random`` and ``cohort-best`` as the table above says."""
    method, settings = inp.job.method, inp.settings
    if method == "isnas":
        device = resolve_device(inp.device)
        obs, _ = inp.problem()
        search = search_picks(obs.to(device), settings, seed=inp.job.seed, device=device, quiet=inp.quiet)
        fields = {"search": {"candidates": search.num_scored, "metric": search.metric, "pick": str(search.genotype),
                             "cohort": [m.as_dict() for m in search.cohort]}}
        options = _stop_options(search.final_settings(settings).early_stopping, settings.early_stopping)
        return Plan([search.genotype], fields, dict(search.timings_s), options)
    if method == "nasdip":
        return Plan([f"nasdip-{inp.task}"])
    if method == "dip-skip":
        return Plan(["dip-skip"])
    # The pool and the scores are the search's own for this seed (same list, sample and seeding).
    pool, _ = candidate_list(settings.candidates, settings.num_candidates, inp.job.seed)
    if method == "random":
        i = random_index(inp.job.image, inp.job.seed, len(pool))
        return Plan([pool[i]], {"pool": {"models": str(settings.candidates), "size": len(pool), "index": i}})
    if method != "cohort-best":
        raise ValueError(f"not a fixed-architecture method: {method}")
    t = time.perf_counter()
    device = resolve_device(inp.device)
    obs, _ = inp.problem()
    scores = score_candidates(obs.to(device), pool, settings.metrics, width=settings.width, seed=inp.job.seed,
                              batch=settings.score_batch, device=device, quiet=inp.quiet)
    cohort = rank_cohort(pool, scores[:, 0], min(settings.cohort_size, len(pool)))
    if selects_by_validation(settings.selection, obs):
        with_fixed_network(cohort, inp.task)  # the validated selection's cohort also holds NAS-DIP's genotype
    fields = {"search": {"candidates": len(pool), "metric": settings.metrics[0],
                         "cohort": [{"genotype": str(m.genotype), "metric_value": m.metric_value}
                                    for m in cohort]}}
    return Plan([m.genotype for m in cohort], fields, {"score": time.perf_counter() - t})


def finish_job(inp: JobInput, plan: Plan, records: Sequence[RunRecord], *, device: str) -> JobOutcome:
    """The row of a job from its trained runs (for ``cohort-best`` the best PSNR's); its
    ``trained_together`` is the largest group one of the runs trained in."""
    settings = inp.settings.for_image(inp.task, inp.problem()[0].output_size)
    fields = dict(plan.fields)
    best = max(range(len(records)), key=lambda i: (records[i].psnr, -i))
    if inp.job.method == "cohort-best":
        for member, rec in zip(fields["search"]["cohort"], records):
            member.update(psnr=rec.psnr, ssim=rec.ssim, iterations_run=rec.iterations_run)
    rec = records[best]
    timings = dict(plan.timings)
    timings.setdefault("final", sum(r.seconds for r in records))
    timings.setdefault("total", sum(v for k, v in timings.items() if k != "total"))
    es = plan.options.get("early_stopping", settings.early_stopping)  # with the search's stop start
    row = {
        "image": inp.job.image, "method": inp.job.method, "label": METHOD_LABELS[inp.job.method],
        "oracle": inp.job.oracle, "reference": False, "seed": inp.job.seed,
        "psnr": rec.psnr, "ssim": rec.ssim, "psnr_y_channel": rec.psnr_y_channel,
        "architecture": rec.architecture, "genotype": rec.genotype, "width": rec.width,
        "in_channels": rec.in_channels,
        "iterations": {"requested": settings.final_run(inp.task).iterations,
                       "run": rec.iterations_run},
        "early_stopping": None if es is None else {
            **asdict(es), "stopped_at": rec.stopped_at, "stopped_early": rec.early_stopped,
            "psnr_at_stop": rec.psnr_at_stop},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "device": device, "threads": inp.threads, "precision": rec.precision, "compiled": rec.compiled,
        "trained_together": max(r.trained_with for r in records), "versions": versions(), **fields,
    }
    if rec.restarts:
        row["restarts"] = rec.restarts
    if rec.blended:
        row["blended"] = rec.blended
    if rec.anchored:
        row["anchored"] = rec.anchored
    curves = {} if rec.curve is None else {"psnr": rec.curve, "psnr_raw": rec.curve_raw,
                                           "stopped_at": rec.stopped_at, "psnr_at_stop": rec.psnr_at_stop}
    return JobOutcome(row, rec.output, curves)


def run_reference_job(inp: JobInput) -> JobOutcome:
    """A reference method's job (:mod:`~isnas_fast.suite.references`): run on the
    CPU on the job's input files, timed; the row has the DIP rows' fields where they
    apply (no architecture, steps, early stop or curve)."""
    method = inp.job.method
    with torch_threads(inp.threads):
        t = time.perf_counter()
        output = run_reference(method, inp.observed, mask=inp.mask, sigma=inp.task_params.get("sigma"),
                               factor=inp.task_params.get("factor"))
        seconds = time.perf_counter() - t
    task = task_class(inp.task)  # scored as every method of the task is
    value, similarity = float(task.psnr(output, inp.clean)[0]), float(task.ssim(output, inp.clean)[0])
    on_y = task.psnr_on_y(int(output.shape[1]))
    row = {
        "image": inp.job.image, "method": method, "label": METHOD_LABELS[method], "oracle": False,
        "reference": True, "seed": inp.job.seed, "psnr": value, "ssim": similarity, "psnr_y_channel": on_y,
        "architecture": method, "genotype": None, "width": None, "in_channels": None, "iterations": None,
        "early_stopping": None, "timings_s": {"reference": round(seconds, 3), "total": round(seconds, 3)},
        "device": "cpu", "threads": inp.threads, "precision": None, "compiled": False, "trained_together": 1,
        "versions": {**versions(), **package_versions(method)},
    }
    return JobOutcome(row, output)


def run_job(inp: JobInput) -> JobOutcome:
    """Run one job on its own (every full-size run through ``restore``; a reference
    through :func:`run_reference_job`)."""
    if inp.job.reference:
        return run_reference_job(inp)
    with torch_threads(inp.threads):
        device = str(resolve_device(inp.device))
        if inp.job.method == "isnas":
            res = inp.restore()
            assert res.search is not None
            search = {"candidates": res.search.num_scored, "metric": res.search.metric, "pick": str(res.genotype),
                      "cohort": [m.as_dict() for m in res.cohort]}
            options = _stop_options(res.settings.early_stopping, inp.settings.early_stopping)
            plan = Plan([res.genotype], {"search": search}, dict(res.timings_s), options)
            return finish_job(inp, plan, [_from_restore(res, res.genotype)], device=device)
        plan = plan_fixed(inp)
        records = [_from_restore(inp.restore(a), a) for a in plan.architectures]
        return finish_job(inp, plan, records, device=device)


def train_together(runs: Sequence[tuple[JobInput, Architecture]], *, quiet: bool = True) -> list[RunRecord]:
    """Train the full-size runs of several jobs as one program (:func:`~isnas_fast.search.train_group`).

    ``runs``: (job, architecture) pairs of one suite (same settings and
    device; observations may differ in size).  Each network and input code
    is built and seeded exactly as ``restore(arch=...)`` builds it, so each
    member follows its one-by-one trajectory; runs whose settings differ
    once sized for their image (:meth:`~isnas_fast.search.SearchSettings.for_image`)
    train in separate groups.  On a CPU the members are
    sharded over the caller's torch threads, each member computing on one
    intra-op thread: bit for bit what ``restore`` gives under
    ``torch.set_num_threads(1)``; on CUDA up to last-bit differences.
    Returns one record per run, in order; ``seconds`` is the group's time
    divided evenly.
    """
    first = runs[0][0]
    device = resolve_device(first.device)
    members, observations, truths, options = [], [], [], []
    for inp, arch in runs:
        obs, gt = inp.problem()
        settings = inp.settings.for_image(inp.task, obs.output_size)
        a = resolve_architecture(arch)
        members.append(GroupMember(a, genotype_seed(inp.job.seed, a), baseline_input_channels(arch, obs.channels),
                                   settings.width_of(a)))
        observations.append(obs.to(device))
        truths.append(gt.to(device))
        # Every member on one intra-op thread on a CPU (one shard per thread of the job, also a
        # group of one and a shard left alone): each computes what a one-thread run does alone.
        options.append(replace(settings.final_run(inp.task), member_threads=1))
    trained, share, sizes = [None] * len(runs), [0.0] * len(runs), [1] * len(runs)
    for opts in dict.fromkeys(options):  # runs sized alike train as one group
        idx = [i for i, o in enumerate(options) if o == opts]
        t = time.perf_counter()
        group = train_group([members[i] for i in idx], [observations[i] for i in idx], opts, device=device,
                            ground_truth=[truths[i] for i in idx], quiet=quiet, desc=f"{len(idx)} runs together")
        for i, g in zip(idx, group):
            trained[i], share[i], sizes[i] = g, (time.perf_counter() - t) / len(idx), len(idx)
    records = []
    for (arch, _), m, t_, gt, obs, sh, n in zip(runs, members, trained, truths, observations, share, sizes):
        res, genotype, width, in_ch = t_.result, str(m.architecture), m.width, m.in_channels
        out, gt = obs.crop_output(res.output.float()), obs.crop_output(gt)
        task = obs.task
        quality = (float(task.psnr(out, gt)[0]), float(task.ssim(out, gt)[0]), task.psnr_on_y(int(out.shape[1])))
        records.append(replace(_record(res, out, quality, arch, genotype, width, in_ch, sh), trained_with=n))
    return records
