"""Public API: ``restore`` and ``score`` (DESIGN §1).

Inputs are converted once at this edge (path, PIL image, NumPy array or
tensor -> (1, C, H, W) float32 in [0, 1]); results come back as the kind the
user gave.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .device import resolve_device, seeded
from .dip import DIPResult, DIPSettings, EarlyStopping, fit_dip
from .errors import InputError
from .genotype import Genotype, read_genotypes
from .imageio import load_image, prepare_size, to_like
from .network import BASELINE_NAMES, build_network, resolve_architecture
from .quality import psnr, ssim
from .search import (
    TASK_ITERATIONS,
    CohortMember,
    SearchSettings,
    candidate_list,
    genotype_seed,
    preset as make_preset,
    run_search,
    score_candidates,
)
from .spectral import canonical_metric
from .tasks import Observation, SuperResolve, Task, make_task

__all__ = ["RestoreResult", "restore", "score", "prepare_problem"]


@dataclass
class RestoreResult:
    """The outcome of :func:`restore`.

    ``image``: the restored image as the kind the user gave (tensor, array,
    PIL image; a path gives a tensor).  ``tensor``: (1, C, H, W) float32 in
    [0, 1].  ``genotype``: the architecture used (a Genotype or ``"dip-skip"``).
    ``cohort``: the cohort table (empty when ``arch`` skipped the search).
    ``timings_s``: seconds per stage.  ``psnr``/``ssim``: only with ground truth.
    """

    image: Any
    tensor: Tensor
    genotype: Union[Genotype, str]
    cohort: list[CohortMember]
    timings_s: dict[str, float]
    task: Task
    observation: Observation
    dip: DIPResult
    settings: SearchSettings
    device: str
    seed: int
    in_channels: int
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    notices: list[str] = field(default_factory=list)
    search_info: dict = field(default_factory=dict)
    ground_truth: Optional[Tensor] = field(default=None, repr=False)  # cropped, for reports/export only

    def report(self) -> dict:
        """A JSON-able report of the run."""
        d = self.dip
        rep: dict[str, Any] = {
            "task": self.task.name,
            "params": self.task.params(),
            "genotype": str(self.genotype),
            "width": self.settings.width if self.genotype != "dip-skip" else 128,
            "in_channels": self.in_channels,
            "cohort": [m.as_dict() for m in self.cohort],
            "metric": self.settings.metric,
            "search": self.search_info,
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            "iterations": {"requested": self._requested_iterations(), "run": d.iterations_run},
            "compiled": d.compiled,
            "compile_seconds": round(d.compile_seconds, 3),
            "precision": d.precision,
            "cuda_graph": d.cuda_graph,
            "early_stopping": None,
            "size": {"height": int(self.tensor.shape[2]), "width": int(self.tensor.shape[3])},
            "seed": self.seed,
            "device": self.device,
            "versions": {
                "isnas_fast": __version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "notices": list(self.notices),
        }
        if self.settings.early_stopping is not None and d.stopped_at is not None:
            es = {
                "window": self.settings.early_stopping.window,
                "patience": self.settings.early_stopping.patience,
                "detected_iteration": d.stopped_at,
                "stopped_early": d.early_stopped,
            }
            if d.psnr_curve:
                # The best the run passed through, smoothed or raw, vs what the detector returned.
                best_s, best_r = max(d.psnr_curve), max(d.psnr_raw_curve)
                es["psnr_at_detected"] = round(d.psnr_at_stop, 4)
                es["best_psnr"] = round(max(best_s, best_r), 4)
                curve = d.psnr_curve if best_s >= best_r else d.psnr_raw_curve
                es["best_iteration"] = int(np.argmax(curve)) + 1
            rep["early_stopping"] = es
        if self.psnr is not None:
            rep["psnr"] = round(self.psnr, 4)
            rep["ssim"] = round(self.ssim, 5) if self.ssim is not None else None
            rep["psnr_y_channel"] = self._y_channel()
        return rep

    def _requested_iterations(self) -> int:
        return self.settings.final_iterations or TASK_ITERATIONS[self.task.name]

    def _y_channel(self) -> bool:
        return self.task.name == "sr" and self.tensor.shape[1] == 3


def _resolve_task(task: Union[str, Task], mask: Any, task_params: dict) -> Task:
    if isinstance(task, Task):
        if task_params or mask is not None:
            given = ", ".join(sorted(task_params) + (["mask"] if mask is not None else []))
            raise InputError(f"pass task parameters ({given}) either in the Task object or as arguments, not both")
        return task
    if task is None:
        raise InputError("a task is required: denoise, inpaint or sr")
    name = str(task).strip().lower()
    if name in ("inpaint", "inpainting") and mask is not None:
        return make_task(name, mask=_load_mask(mask), **{k: v for k, v in task_params.items() if k != "p"})
    return make_task(name, **task_params)


def _load_mask(mask: Any) -> Tensor:
    if isinstance(mask, Tensor) and mask.ndim in (2, 4) and (mask.ndim == 2 or mask.shape[:2] == (1, 1)):
        return mask if mask.ndim == 4 else mask[None, None]
    m = load_image(mask)
    if m.shape[1] != 1:
        m = m.mean(dim=1, keepdim=True)
    return m


def _crop_offsets(h: int, w: int, multiple: int) -> tuple[int, int, int, int]:
    nh, nw = h - h % multiple, w - w % multiple
    return (h - nh) // 2, (w - nw) // 2, nh, nw


def prepare_problem(
    image: Any,
    task: Task,
    *,
    ground_truth: Any = None,
) -> tuple[Observation, Optional[Tensor], list[str]]:
    """Load and size-check the corrupted image (and ground truth), then wrap it.

    Images are centre-cropped to multiples of 32 (for SR: the high-resolution
    output is, so the low-resolution input to multiples of 32/f) and must be
    at least 64 px (output) on each side.  Returns ``(observation,
    ground_truth or None, notices)``.
    """
    x = load_image(image)
    f = task.factor if isinstance(task, SuperResolve) else 1
    what = "low-resolution image" if f > 1 else "image"
    h0, w0 = x.shape[-2:]
    if min(h0, w0) * f < 64:
        need = -(-64 // f)
        raise InputError(f"{what} is {w0}x{h0} px; both sides must be at least {need} px"
                         + (f" (the x{f} output must be at least 64 px)" if f > 1 else ""))
    x, notices = prepare_size(x, multiple=32 // f, min_side=-(-64 // f), what=what)
    top, left, nh, nw = _crop_offsets(h0, w0, 32 // f)
    mask = getattr(task, "mask", None)
    if mask is not None:
        mh, mw = mask.shape[-2:]
        if (mh, mw) != (h0, w0):
            raise InputError(f"mask size {mw}x{mh} does not match the image size {w0}x{h0}")
        mask = mask[..., top : top + nh, left : left + nw]
    obs = task.observe(x, mask=mask)
    gt = None
    if ground_truth is not None:
        gt = load_image(ground_truth)
        gh, gw = gt.shape[-2:]
        if (gh, gw) != (h0 * f, w0 * f):
            raise InputError(
                f"ground truth is {gw}x{gh} px but must be {w0 * f}x{h0 * f} px"
                + (f" ({f}x the input)" if f > 1 else " (the input's size)")
            )
        if gt.shape[1] != x.shape[1]:
            raise InputError(f"ground truth has {gt.shape[1]} channel(s) but the input has {x.shape[1]}")
        gt = gt[..., top * f : (top + nh) * f, left * f : (left + nw) * f]
    return obs, gt, notices


def restore(
    image: Any,
    task: Union[str, Task],
    preset: str = "quick",
    *,
    ground_truth: Any = None,
    mask: Any = None,
    seed: int = 0,
    arch: Union[str, Genotype, None] = None,
    iterations: Optional[int] = None,
    width: Optional[int] = None,
    num_candidates: Optional[int] = None,
    cohort_size: Optional[int] = None,
    cohort_iterations: Optional[int] = None,
    metric: Optional[str] = None,
    models: Union[str, Path, None] = None,
    early_stopping: Union[bool, EarlyStopping, None] = None,
    compile: Optional[bool] = None,
    precision: Optional[str] = None,
    cohort_together: Optional[bool] = None,
    cuda_graph: Optional[bool] = None,
    device: Union[str, torch.device, None] = "auto",
    quiet: bool = False,
    log: Any = None,
    **task_params: Any,
) -> RestoreResult:
    """Restore a corrupted image with an architecture searched for it.

    ``image``: the corrupted image (noisy; masked; low-resolution) as a path,
    PIL image, NumPy array (H, W[, C]) or tensor ((C, H, W) / (1, C, H, W)),
    values in [0, 1] (uint8 arrays in 0..255).  ``task``: ``"denoise"``
    (``sigma=25``), ``"inpaint"`` (``mask=`` image or array, 1 = known) or
    ``"sr"`` (``factor=4``), or a :class:`~isnas_fast.tasks.Task`.
    ``preset``: ``"quick"`` (CPU-friendly) or ``"paper"``; every knob can be
    overridden (``width``, ``num_candidates``, ``cohort_size``,
    ``cohort_iterations``, ``iterations`` = final DIP steps, ``metric``,
    ``models`` = CSV of candidate genotypes or ``"random"``).  ``arch`` skips
    the search and runs DIP with a fixed architecture (a baseline name or a
    genotype).  ``ground_truth`` only adds PSNR/SSIM to the result; the method
    never looks at it.  ``early_stopping``: True/False or an
    :class:`EarlyStopping` (default: the preset's).  ``compile``: compile
    the DIP step with torch.compile (None = on for GPU, on for CPU only for
    runs long enough to repay the compile time).  ``precision``: ``"fp32"``
    (float32 math; on CUDA with TF32 switched off), ``"tf32"`` (TF32
    convolutions; the default on CUDA, as in PyTorch) or ``"bf16"``
    (autocast: on an H200 2.8x the eager step when compiled; 0.2 dB lower
    PSNR on average over 3 seeds at 1200 steps, no measurable cost at the
    PSNR peak over 16 seeds in a CPU emulation); None = tf32 on CUDA, fp32
    elsewhere (the CPU computes all but bf16 in float32).
    ``cohort_together``: train the cohort together (default: one program,
    or one shard per core on an eager CPU run) or one member after another.
    ``cuda_graph``: replay every DIP step as a CUDA graph instead of
    compiling it (CUDA only; no compile time, see :class:`SearchSettings`).
    Deterministic for a given ``seed`` on the same machine and backend (on
    CUDA up to last-bit differences that DIP amplifies: see
    :func:`isnas_fast.dip.fit_dip`).
    """
    t_start = time.perf_counter()
    tk = _resolve_task(task, mask, task_params)
    es: Any = None
    if isinstance(early_stopping, EarlyStopping):
        es = early_stopping
    elif early_stopping is True:
        es = EarlyStopping()
    settings = make_preset(
        preset, width=width, num_candidates=num_candidates, cohort_size=cohort_size,
        cohort_iterations=cohort_iterations, final_iterations=iterations, metric=metric,
        candidates=str(models) if models is not None else None, early_stopping=es,
        compile=compile, precision=precision, cohort_together=cohort_together, cuda_graph=cuda_graph,
    )
    if early_stopping is False:
        settings = replace(settings, early_stopping=None)
    dev = resolve_device(device)
    obs, gt, notices = prepare_problem(image, tk, ground_truth=ground_truth)
    say = log or (lambda msg: None)
    for n in notices:
        say(n)
    obs = obs.to(dev)
    gt = gt.to(dev) if gt is not None else None
    timings: dict[str, float] = {"prepare": time.perf_counter() - t_start}
    c = int(obs.y.shape[1])
    search_info: dict[str, Any] = {}
    if arch is not None:
        a = resolve_architecture(arch)
        named = isinstance(arch, str) and arch.strip().lower() in BASELINE_NAMES
        in_ch = 32 if named else c  # NAS-DIP and DIP baselines take a 32-channel code
        s = genotype_seed(seed, a)
        t = time.perf_counter()
        with seeded(s, dev):
            net = build_network(a, in_ch, c, settings.width, task=tk.name, device=dev)
        final = fit_dip(net, obs, DIPSettings(settings.final_iterations or TASK_ITERATIONS[tk.name]), seed=s,
                        ground_truth=gt, early_stopping=settings.early_stopping, compile=settings.compile,
                        precision=settings.precision, quiet=quiet, desc="restore", cuda_graph=settings.cuda_graph)
        timings["final"] = time.perf_counter() - t
        chosen: Union[Genotype, str] = a
        cohort: list[CohortMember] = []
        search_info = {"mode": "fixed architecture"}
    else:
        in_ch = c
        res = run_search(obs, settings, seed=seed, ground_truth=gt, device=dev, quiet=quiet, log=say)
        timings.update(res.timings_s)
        chosen, cohort, final = res.genotype, res.cohort, res.final
        search_info = {"mode": "search", "candidates": res.num_scored,
                       "skipped_invalid": res.num_skipped_invalid, "preset": preset}
    out = final.output.float()
    timings["total"] = time.perf_counter() - t_start
    p = s_ = None
    if gt is not None:
        y_ch = tk.name == "sr" and out.shape[1] == 3
        p = float(psnr(out, gt, y_channel=y_ch)[0])
        s_ = float(ssim(out, gt)[0])
    return RestoreResult(
        image=to_like(out.cpu(), image), tensor=out.cpu(), genotype=chosen, cohort=cohort, timings_s=timings,
        task=tk, observation=obs, dip=final, settings=settings, device=str(dev), seed=seed,
        in_channels=in_ch, psnr=p, ssim=s_, notices=notices, search_info=search_info,
        ground_truth=gt.cpu() if gt is not None else None,
    )


def score(
    image: Any,
    genotypes: Union[Sequence[Union[Genotype, str]], str, Path],
    task: Union[str, Task],
    metrics: Sequence[str] = ("psd_db_strip_mse",),
    *,
    width: int = 128,
    seed: int = 0,
    mask: Any = None,
    device: Union[str, torch.device, None] = "auto",
    quiet: bool = False,
    **task_params: Any,
) -> list[dict]:
    """Score candidate architectures on a corrupted image (no training).

    ``genotypes``: a list of :class:`Genotype` / ``"u,bits"`` strings, a CSV
    path, or ``"builtin"`` (the 522-genotype list).  Invalid genotypes in a
    CSV are skipped.  Returns one dict per genotype: ``{"genotype": "u,bits",
    <metric>: value, ...}`` in the given order; lower values are better.
    """
    tk = _resolve_task(task, mask, task_params)
    dev = resolve_device(device)
    obs, _, _ = prepare_problem(image, tk)
    if isinstance(genotypes, (str, Path)):
        if str(genotypes) == "builtin":
            gl, _ = candidate_list(SearchSettings(candidates="builtin"))
        else:
            gl, _ = read_genotypes(genotypes, skip_invalid=True)
    else:
        gl = [g if isinstance(g, Genotype) else Genotype.parse(str(g)) for g in genotypes]
    if not gl:
        raise InputError("no genotypes to score")
    names = [canonical_metric(m) for m in metrics]
    table = score_candidates(obs.to(dev), gl, names, width=width, seed=seed, device=dev, quiet=quiet)
    return [{"genotype": str(g), **{n: float(v) for n, v in zip(names, row)}} for g, row in zip(gl, table.tolist())]
