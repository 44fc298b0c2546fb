"""Public API: ``restore`` and ``score`` (docs/design.md §1), thin over the search.

Inputs are converted once at this edge (path, PIL image, NumPy array or
tensor -> (1, C, H, W) float32 in [0, 1]); results come back as the kind the
user gave.  The search knobs are the keywords of
:data:`isnas_fast.search.KNOBS`, declared once in
:class:`~isnas_fast.search.SearchSettings`.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from .device import resolve_device
from .dip.early_stopping import ClippedNoiseTable
from .errors import InputError
from .genotype import Genotype
from .io import to_like
from .kernels.spectral_reference import canonical_metric
from .noise import NoiseEstimate
from .network import baseline_input_channels, resolve_architecture
from .problem import TASK_KEYWORDS, prepare_problem, resolve_task, resolve_task_for_image
from .result import RestoreResult
from .resources import ResourcePlan, plan_restore
from .search import (KNOBS, CohortMember, candidate_list, run_search, score_candidates, settings_from_options,
                     train_final)
from .search import LARGE_DENOISE, SearchResult, SearchSettings
from .search.pipeline import search_picks
from .tiling import restore_in_tiles
from .trained import TrainedRun
from .search.settings import RENAMED_KEYWORDS, knob_parameter_doc
from .tasks import Observation, Task

__all__ = ["RestoreResult", "restore", "score", "split_options", "run_settings", "baseline_input_channels",
           "resolve_task_for_image"]



def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword options into (search knobs, task parameters); unknown names raise InputError."""
    knobs = {k.api for k in KNOBS} | set(RENAMED_KEYWORDS)
    unknown = sorted(set(options) - knobs - set(TASK_KEYWORDS))
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)}; search options: "
                         f"{', '.join(sorted(k.api for k in KNOBS))}; task parameters: {', '.join(TASK_KEYWORDS)}")
    return ({k: v for k, v in options.items() if k in knobs},
            {k: v for k, v in options.items() if k in TASK_KEYWORDS})


def run_settings(preset: str, settings: Optional[SearchSettings], knobs: dict[str, Any]) -> SearchSettings:
    """The settings a run uses: ``settings`` when given (then no knob keyword may be), else the
    preset's with the knob keywords applied (:func:`~isnas_fast.search.settings_from_options`)."""
    if settings is None:
        return settings_from_options(preset, knobs)
    if not isinstance(settings, SearchSettings):
        raise InputError(f"settings must be a SearchSettings, got {type(settings).__name__}")
    given = sorted(k for k, v in knobs.items() if v is not None)
    if given:
        raise InputError(f"search knobs given both in settings and as keywords ({', '.join(given)}); use one")
    return settings.validate()


def restore(
    image: Any,
    task: Union[str, Task],
    preset: str = "quick",
    *,
    ground_truth: Any = None,
    mask: Any = None,
    seed: int = 0,
    arch: Union[str, Genotype, None] = None,
    device: Union[str, torch.device, None] = "auto",
    quiet: bool = False,
    log: Optional[Callable[[str], None]] = None,
    tile: Optional[int] = None,
    settings: Optional[SearchSettings] = None,
    **options: Any,
) -> Union[RestoreResult, list[RestoreResult]]:
    """Restore a corrupted image with an architecture searched for it.

    ``image``: the corrupted image (noisy; masked; low-resolution) as a path,
    PIL image, NumPy array (H, W[, C]) or tensor ((C, H, W) / (1, C, H, W)),
    values in [0, 1] (uint8 arrays in 0..255); any size of at least 64 px a
    side (it is padded to what the network needs and the result cropped
    back: the restored image has the input's size, f x for SR).  A list of
    images restores each and returns a list.  ``task``: ``"denoise"``
    (``sigma`` in 0..255 units; None, absent or ``"auto"``: estimated from
    the image), ``"inpaint"`` (``mask=`` image or array, 1 = known) or
    ``"sr"`` (``factor=4``), or a :class:`~isnas_fast.tasks.Task`.
    ``preset``: ``"quick"`` (CPU-friendly) or ``"paper"``.  ``arch`` skips
    the search and runs DIP with a fixed architecture (a baseline name or a
    genotype) at the same budget.  ``ground_truth`` only adds PSNR/SSIM to
    the result; the method never looks at it.  ``seed``: same seed, same
    result on the same machine and backend (on CUDA up to last-bit
    differences that DIP amplifies).  ``log(message)`` receives progress
    messages (the final run's layout and its estimated memory and time
    first).  ``tile``: restore in overlapping tiles of this side (px, a
    multiple of 32) trained together and blended; None: the whole image when
    its estimated memory fits the device, else tiles chosen to fit (the
    search runs once; every tile uses its pick).  A run that cannot fit
    raises InputError before any training.  ``settings``: the search
    settings built already (a :class:`~isnas_fast.search.SearchSettings`,
    e.g. ``isnas_fast.search.preset("quick", width=32)``), run instead of
    the preset's with the knob keywords (give no knob keyword then);
    ``preset`` names the preset they start from in the report.

    Search knobs (None or absent: the preset's value):

{knobs}
    """
    if _is_image_list(image):
        return _restore_each(image, task, preset, ground_truth=ground_truth, mask=mask, seed=seed, arch=arch,
                             device=device, quiet=quiet, log=log, tile=tile, settings=settings, **options)
    t_start = time.perf_counter()
    knob_values, task_params = split_options(options)
    settings = run_settings(preset, settings, knob_values)
    dev = resolve_device(device)
    say = log or (lambda msg: None)
    image_in = image
    tk, noise, obs, gt, notices = _problem_on(image, task, mask, task_params, ground_truth, dev, say)
    settings = _sized(settings, tk, obs, say)
    timings: dict[str, float] = {"prepare": time.perf_counter() - t_start}
    a = resolve_architecture(arch) if arch is not None else None
    in_ch = baseline_input_channels(arch, obs.channels) if arch is not None else None
    layout = plan_restore(obs, settings, device=dev, architecture=a, in_channels=in_ch, tile=tile)
    settings = _planned(settings, layout, tk, obs, dev, say)
    stage = _final_stage(obs, settings, layout, a, in_ch, seed=seed, gt=gt, device=dev, quiet=quiet, log=say)
    timings.update(stage.timings)
    chosen, cohort, run, search, out = stage.chosen, stage.cohort, stage.run, stage.search, stage.output
    search_info = _search_info(stage, settings, preset, layout)
    out, gt = _user_region(out, gt, obs, notices, say)
    timings["total"] = time.perf_counter() - t_start
    p, s_ = (float(tk.psnr(out, gt)[0]), float(tk.ssim(out, gt)[0])) if gt is not None else (None, None)
    final = search.final_settings(settings) if search is not None else settings
    return RestoreResult(
        image=to_like(out.cpu(), image_in), tensor=out.cpu(), genotype=chosen, cohort=cohort, timings_s=timings,
        task=tk, observation=obs, run=run, settings=final, device=str(dev), seed=seed, psnr=p, ssim=s_,
        notices=notices, search_info=search_info, search=search,
        ground_truth=gt.cpu() if gt is not None else None,
        noise=noise.as_dict() if noise is not None else None,
    )


def _planned(settings: SearchSettings, layout: ResourcePlan, tk: Task, obs: Observation, device: torch.device,
             say: Callable[[str], None]) -> SearchSettings:
    """Say the final run's plan (and its partner's, with a blend); ``settings`` without a
    blend or an anchor when ``layout`` restores in tiles (each tile trains one network once)."""
    partner = settings.partner(tk.name, obs.output_size)
    if layout.plan is not None and partner is not None:
        say(f"restoring in tiles: each tile trains one network, not blended with {settings.blend}")
        settings, partner = replace(settings, blend="none"), None
    if layout.plan is not None and settings.anchor_for(tk.name):
        say(f"restoring in tiles: each tile trains one network from one start, not shrunk toward {settings.anchor}")
        settings = replace(settings, anchor="none")
    then = ""
    if partner is not None:
        other = plan_restore(obs, settings, device=device, architecture=partner,
                             in_channels=baseline_input_channels(partner, obs.channels))
        then = f"; then {partner}, its image blended with the pick's: {other.estimate.describe()}"
    starts = settings.starts_for(tk.name)
    say(f"final run planned: {layout.describe()}"
        + (f"; {starts} random starts, one after another" if starts > 1 else "") + then)
    return settings


def _sized(settings: SearchSettings, tk: Task, obs: Observation, say: Callable[[str], None]) -> SearchSettings:
    """``settings`` for this image (:meth:`~isnas_fast.search.SearchSettings.for_image`), said when sized."""
    sized = settings.for_image(tk.name, obs.output_size)
    if sized is not settings:
        say(f"an image of {LARGE_DENOISE.size_text} or more: the final run at width {sized.network_width}, "
            f"up to {sized.final_run(tk.name).dip.iterations} steps")
    return sized


def _user_region(out: Tensor, gt: Optional[Tensor], obs: Observation, notices: list[str],
                 say: Callable[[str], None]) -> tuple[Tensor, Optional[Tensor]]:
    """The output and ground truth cropped to the user's region; a notice (added to
    ``notices`` and said) when the output looks under-trained."""
    out = obs.crop_output(out)
    gt = obs.crop_output(gt) if gt is not None else None
    short = undertrained_notice(out, obs)
    if short is not None:
        notices.append(short)
        say(f"warning: {short}")
    return out, gt


def _problem_on(image: Any, task: Any, mask: Any, task_params: dict, ground_truth: Any, device: torch.device,
                say: Callable[[str], None]) -> tuple[Task, Optional[NoiseEstimate], Observation, Optional[Tensor],
                                                     list[str]]:
    """The task (sigma estimated when not given), the padded observation and ground truth on ``device``."""
    tk, noise, image = resolve_task_for_image(image, task, mask, task_params)
    if noise is not None:
        say(f"noise level not given: estimated sigma {noise.sigma:.2f} (0..255) by {noise.method}")
    obs, gt, notices = prepare_problem(image, tk, ground_truth=ground_truth)
    for n in notices:
        say(n)
    return tk, noise, obs.to(device), gt.to(device) if gt is not None else None, notices


@dataclass
class _Stage:
    """What the search (or the fixed architecture) and the full-size run produced."""

    chosen: Union[Genotype, str]
    cohort: list[CohortMember]
    run: TrainedRun
    search: Optional[SearchResult]
    info: dict
    output: Tensor
    timings: dict


def _final_stage(obs: Observation, settings: SearchSettings, layout: ResourcePlan, arch: Any,
                 in_ch: Optional[int], *, seed: int, gt: Optional[Tensor], device: torch.device, quiet: bool,
                 log: Callable[[str], None]) -> _Stage:
    """The search (unless ``arch``) and the full-size run: whole, or in the tiles ``layout`` chose."""
    timings: dict[str, float] = {}
    if layout.plan is None and arch is not None:
        t = time.perf_counter()
        run = train_final(arch, obs, settings, in_channels=in_ch, seed=seed, ground_truth=gt, device=device,
                          quiet=quiet)
        timings["final"] = time.perf_counter() - t
        return _Stage(arch, [], run, None, {"mode": "fixed architecture"}, run.dip.output.float(), timings)
    if layout.plan is None:
        search = run_search(obs, settings, seed=seed, ground_truth=gt, device=device, quiet=quiet, log=log)
        out = search.ensemble.output if search.ensemble is not None else search.final.dip.output.float()
        return _Stage(search.genotype, search.cohort, search.final, search, {}, out, dict(search.timings_s))
    if settings.ensemble > 1 or len(settings.metrics) > 1 and settings.final == "all":
        raise InputError("a tiled restore trains one architecture: use ensemble 1 and final 'first'")
    if settings.restarts > 1:
        raise InputError("a tiled restore trains each tile once: use restarts 1, or restore the image whole")
    search, cohort = None, []
    if arch is None:
        search = search_picks(obs, settings, seed=seed, device=device, quiet=quiet, log=log)
        timings.update(search.timings_s)
        arch, cohort = search.genotype, search.cohort
        in_ch = baseline_input_channels(arch, obs.channels)  # a fixed network picked by name takes its own code
    t = time.perf_counter()
    final = search.final_settings(settings) if search is not None else settings
    tiled, runs = restore_in_tiles(obs, arch, final, tile=layout.tile, overlap=layout.overlap, seed=seed,
                                   in_channels=in_ch, group_size=layout.group_size, ground_truth=gt,
                                   device=device, quiet=quiet, log=log)
    timings["final"] = time.perf_counter() - t
    info = {"mode": "fixed architecture" if search is None else "search",
            "tiles": {"tile": layout.tile, "overlap": layout.overlap, "count": len(runs),
                      "group_size": layout.group_size, "stopped_at": [r.dip.stopped_at for r in runs]}}
    return _Stage(arch, cohort, runs[0], search, info, tiled, timings)


def _search_info(stage: _Stage, settings: SearchSettings, preset: str, layout: ResourcePlan) -> dict:
    """The report's ``search`` block: what ran, the search's sizes and counts, the planned resources."""
    info = dict(stage.info)
    search = stage.search
    if search is not None:
        info.update({"mode": "search", "candidates": search.num_scored,
                     "skipped_invalid": search.num_skipped_invalid, "preset": preset,
                     "models": str(settings.candidates), "stage_sizes": search.stage_sizes})
    info["resources"] = {"layout": layout.describe(), "estimated_peak_bytes": layout.estimate.peak_bytes,
                         "estimated_seconds": layout.estimate.seconds}
    return info


def undertrained_notice(out: Tensor, obs: Observation) -> Optional[str]:
    """A notice when a denoised ``out`` (1, C, H, W, the user's region) is likely worse than the
    noisy input, or None.

    With y = x + n, mean((out - y)^2) is about mean((out - x)^2) + Var(n): a
    residual above twice the (clipped) noise variance means the output is
    farther from the clean image than the noisy input is -- the run ended
    before the network fitted the image.
    """
    sigma = obs.task.noise_level
    if sigma is None:
        return None
    y = obs.crop_output(obs.y).to(out.device, torch.float64)
    est = out.to(torch.float64).clamp(0, 1)
    residual = float((est - y).square().mean())
    noise_var = float(ClippedNoiseTable(float(sigma) / 255.0, device=est.device).variance_at_mean(est).mean())
    if residual <= 2.0 * noise_var:
        return None
    return (f"the run ended before the network fitted the image (residual {residual:.3g} against the noise's "
            f"{noise_var:.3g}): the result is likely worse than the input; raise --iterations")


def _is_image_list(image: Any) -> bool:
    return isinstance(image, list) and bool(image) and not isinstance(image[0], (int, float, list))


def _restore_each(images: list, task: Any, preset: str, *, ground_truth: Any, mask: Any, **kw: Any) -> list:
    """``restore`` of each image of a list; ``ground_truth`` / ``mask``: one for all or a list of as many."""
    def per_image(value: Any, what: str) -> list:
        if isinstance(value, list):
            if len(value) != len(images):
                raise InputError(f"{what}: {len(value)} given for {len(images)} images")
            return value
        return [value] * len(images)

    return [restore(im, task, preset, ground_truth=g, mask=m, **kw)
            for im, g, m in zip(images, per_image(ground_truth, "ground_truth"), per_image(mask, "mask"))]


restore.__doc__ = restore.__doc__.replace("{knobs}", knob_parameter_doc())
# The knobs as keyword-only parameters of restore's signature (help(), IDEs, inspect).
_params = list(inspect.signature(restore).parameters.values())[:-1]
restore.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    _params
    + [inspect.Parameter(k.api, inspect.Parameter.KEYWORD_ONLY, default=None) for k in KNOBS]
    + [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, default=None) for p in TASK_KEYWORDS],
    return_annotation=RestoreResult,
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
    path, or a named list (``"builtin"``/``"builtin522"``, ``"random5000"``,
    ``"random:N"``).  Invalid genotypes in a list are skipped.  Returns one
    dict per genotype: ``{"genotype": "u,bits", <metric>: value, ...}`` in
    the given order; lower values are better.
    """
    tk = resolve_task(task, mask, task_params)
    dev = resolve_device(device)
    obs, _, _ = prepare_problem(image, tk)
    if isinstance(genotypes, (str, Path)):
        gl, _ = candidate_list(genotypes, None, seed)
    else:
        gl = [g if isinstance(g, Genotype) else Genotype.parse(str(g)) for g in genotypes]
    if not gl:
        raise InputError("no genotypes to score")
    names = [canonical_metric(m) for m in metrics]
    table = score_candidates(obs.to(dev), gl, names, width=width, seed=seed, device=dev, quiet=quiet)
    return [{"genotype": str(g), **{n: float(v) for n, v in zip(names, row)}} for g, row in zip(gl, table.tolist())]
