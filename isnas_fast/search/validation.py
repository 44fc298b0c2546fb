"""Held-out pixels: a ground-truth-free measure of how well a cohort member restores.

Each cohort member fits the corrupted image with a random share of its known
pixels held out; the mean squared error of its output on the held-out pixels,
against their corrupted values, is ``E|f - x|^2 + sigma^2`` for independent
noise of variance ``sigma^2``: the member's true error on those pixels plus
a constant common to every member (same pixels, same noise).  Ranking the
members by it ranks them by their true restoration error, with no ground
truth (the "validated" selection, docs/design.md §5).  The error is taken at
the best of the iterations kept (``snapshots``), on the raw and on the
smoothed output, since a network that fits fast may peak before the smoothed
output catches up.

The task's fixed network (NAS-DIP's genotype) is the default: a searched
member replaces it only when its held-out error is below the fixed
network's by more than ``MARGIN_SE`` standard errors of the paired
difference (:func:`paired_standard_error`, over the held-out values).  On a
64 px crop a fifth of the pixels is about 2 500 values, and two members
whose true errors differ by less than the noise of that estimate are a coin
flip; the fixed network is then the safer choice.

Denoising holds out pixels of the noisy image; inpainting holds out known
pixels.  Super-resolution has no pixel the forward operator does not mix, and
a cohort far shorter than the final run cannot rank networks for its end
(:func:`unranked_reason`): the pick is then NAS-DIP's genotype.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..dip import DIPResult
from ..errors import InputError
from ..genotype import Genotype
from ..network import BASELINES
from ..tasks import Denoise, Inpaint, Observation, Task
from .cohort import CohortMember
from .settings import TASK_ITERATIONS, SearchSettings

__all__ = ["HOLDOUT_FRACTION", "SNAPSHOT_EVERY", "task_validates", "validates", "holdout_mask", "validation_problem",
           "snapshot_steps", "heldout_error", "fixed_genotype", "selects_by_validation", "with_fixed_network",
           "select_validated", "heldout_scores", "paired_standard_error", "HeldOutScore", "MARGIN_SE",
           "MIN_COHORT_SHARE", "best_heldout_output", "cohort_ranks_the_run", "unranked_reason", "holds_kept_stop"]

#: Share of the known pixels held out of each cohort member's fit.
HOLDOUT_FRACTION = 0.2
#: Iterations between the outputs a member's held-out error is measured on.
SNAPSHOT_EVERY = 10
#: Standard errors of the paired held-out difference by which a searched member
#: must beat the fixed network to be picked over it.
MARGIN_SE = 2.0
#: The least share of the final run's steps a cohort run must take for its held-out
#: error to rank the members (:func:`cohort_ranks_the_run`).
MIN_COHORT_SHARE = 0.25


def task_validates(task: Task) -> bool:
    """Whether ``task`` has pixels to hold out (denoising, inpainting)."""
    return isinstance(task, (Denoise, Inpaint))


def validates(observation: Observation) -> bool:
    """Whether the observation's task has pixels to hold out (:func:`task_validates`)."""
    return task_validates(observation.task)


def holdout_mask(observation: Observation, seed: int, fraction: float = HOLDOUT_FRACTION) -> Tensor:
    """(1, 1, h, w) float mask, 1 = held out: ``fraction`` of the known pixels, drawn with ``seed``."""
    if not 0 < fraction < 1:
        raise InputError(f"held-out fraction must be in (0, 1), got {fraction}")
    h, w = observation.y.shape[-2:]
    g = torch.Generator().manual_seed(int(seed) + 7919)
    held = (torch.rand((1, 1, h, w), generator=g) < fraction).to(observation.y.dtype).to(observation.y.device)
    if observation.mask is not None:
        held = held * observation.mask
    return held


def validation_problem(observation: Observation, held: Tensor) -> Observation:
    """The observation with the ``held`` pixels (1 = held out) unknown: an inpainting problem
    that keeps their values aside (``held`` / ``held_y``) for a held-out stop."""
    if not validates(observation):
        raise InputError(f"the {observation.task.name} task has no pixels to hold out")
    known = (1 - held) if observation.mask is None else observation.mask * (1 - held)
    held = held if observation.mask is None else observation.mask * held
    return Observation(Inpaint(p=None, mask=known), observation.y * known, known, observation.padding,
                       held=held, held_y=observation.y * held)


def snapshot_steps(iterations: int, every: int = SNAPSHOT_EVERY) -> list[int]:
    """The iterations whose outputs are kept for validation: every ``every`` steps and the last."""
    return sorted(set(range(every, iterations + 1, every)) | {iterations})


@dataclass(frozen=True)
class HeldOutScore:
    """One member's held-out validation: the least mean squared error over its kept
    outputs (``error``), the iteration where it was reached (``at``), and the
    standard error of that output's difference to the fixed network's best kept
    output (``se_vs_fixed``; NaN for the fixed network or without one)."""

    error: float
    at: int
    se_vs_fixed: float = float("nan")


def best_heldout_output(result: DIPResult, observation: Observation, held: Tensor) -> tuple[float, int, Tensor]:
    """Of ``result``'s kept outputs (snapshots, raw and smoothed, and its final output), the
    one of least mean squared error against ``observation.y`` on the ``held`` pixels
    ((1, 1, H, W) mask): (that error, its iteration, the (1, C, H, W) output)."""
    n = float(held.sum()) * observation.y.shape[1]
    if n <= 0:
        raise InputError("no held-out pixels to validate on")
    y = observation.y

    def err(out: Tensor) -> float:
        return float((((out.to(y.dtype) - y) * held) ** 2).sum()) / n

    best, at, output = err(result.output), result.iterations_run, result.output
    candidates: Sequence[tuple[int, Tensor]] = [*result.snapshots.items(), *result.raw_snapshots.items()]
    for it, out in candidates:
        e = err(out)
        if e < best:
            best, at, output = e, it, out
    if not math.isfinite(best):
        best = float("inf")
    return best, at, output


def heldout_error(result: DIPResult, observation: Observation, held: Tensor) -> tuple[float, int]:
    """The least mean squared error (float) of ``result``'s kept outputs against the
    corrupted ``observation.y`` on the ``held`` pixels, over its snapshots (raw and
    smoothed) and its final output; and the iteration where it was reached.  Lower is better."""
    best, at, _ = best_heldout_output(result, observation, held)
    return best, at


def paired_standard_error(a: Tensor, b: Tensor, observation: Observation, held: Tensor) -> float:
    """The standard error of the mean over the held-out values of
    ``(a - y)^2 - (b - y)^2``: how precisely the held-out errors of two outputs
    ``a``, ``b`` ((1, C, h, w), [0, 1]) tell which is closer to the image.  The
    noise is independent across the held-out values, so their sample variance
    over ``n`` gives it.  Computed in float64; NaN with fewer than two values."""
    y = observation.y.double()
    d = (a.double() - y) ** 2 - (b.double() - y) ** 2
    m = held.double().expand_as(d).bool()
    vals = d[m]
    n = vals.numel()
    if n < 2:
        return float("nan")
    return float(vals.std(unbiased=True)) / math.sqrt(n)


def heldout_scores(results: dict[Genotype, DIPResult], observation: Observation, held: Tensor,
                   fixed: Optional[Genotype] = None) -> dict[Genotype, HeldOutScore]:
    """Each member's :class:`HeldOutScore` on the ``held`` pixels; with ``fixed``
    (one of ``results``' genotypes) each other member's standard error of its
    difference to the fixed network's best kept output."""
    best = {g: best_heldout_output(r, observation, held) for g, r in results.items()}
    anchor = best[fixed][2] if fixed in best else None
    return {g: HeldOutScore(e, at, float("nan") if anchor is None or g == fixed
                            else paired_standard_error(out, anchor, observation, held))
            for g, (e, at, out) in best.items()}


def fixed_genotype(task: str) -> Genotype:
    """The task's fixed network from the search space: NAS-DIP's genotype."""
    return BASELINES[f"nasdip-{task}"]


def selects_by_validation(selection: str, observation: Observation) -> bool:
    """Whether a search with ``selection`` validates on ``observation``: the validated
    selection, on a task with pixels to hold out."""
    return selection == "validated" and validates(observation)


def cohort_ranks_the_run(cohort_iterations: int, final_iterations: int, task: str) -> bool:
    """Whether cohort runs of ``cohort_iterations`` steps are long enough for their held-out
    errors to rank the networks for a final run of ``final_iterations`` steps (capped at the
    task's paper count): at least :data:`MIN_COHORT_SHARE` of it.  A network that fits 300
    steps of a 9500-step inpainting run fast is not the one that restores best at its end."""
    final = min(int(final_iterations), TASK_ITERATIONS.get(task, int(final_iterations)))
    return cohort_iterations >= MIN_COHORT_SHARE * final


def unranked_reason(settings: SearchSettings, task: Task) -> Optional[str]:
    """Why the validated selection cannot rank the cohort of ``task`` under ``settings``
    (the pick is then NAS-DIP's genotype), in words; None when it ranks it: the task has
    pixels to hold out and the cohort runs long enough (:func:`cohort_ranks_the_run`)."""
    if not task_validates(task):
        return f"no pixel of the {task.name} task can be held out"
    cohort, final = settings.cohort_run(task.name).dip.iterations, settings.final_run(task.name).dip.iterations
    if not cohort_ranks_the_run(cohort, final, task.name):
        return f"the cohort's {cohort} steps are too few to rank networks for the final run's {final}"
    return None


def holds_kept_stop(settings: SearchSettings, task: Task) -> bool:
    """Whether a kept NAS-DIP's discrepancy stop waits for its cohort run's best step
    (``fixed_stop_start``, on a task with a noise level)."""
    return bool(settings.fixed_stop_start) and task.noise_level is not None


def with_fixed_network(members: list[CohortMember], task: str, metric_value: float = float("nan")) -> bool:
    """Append the task's NAS-DIP genotype to the cohort ``members`` (in place) unless it is
    there; True when it was appended."""
    anchor = fixed_genotype(task)
    if any(m.genotype == anchor for m in members):
        return False
    members.append(CohortMember(anchor, metric_value))
    return True


def select_validated(members: list[CohortMember], errors: dict[Genotype, float],
                     fixed: Optional[Genotype] = None, se: Optional[dict[Genotype, float]] = None,
                     margin: float = MARGIN_SE) -> int:
    """Pick the member of least held-out error (ties: the better metric value, then
    list order); sets each member's ``selection_psnr`` (``-10 log10`` of its
    held-out error, dB against the corrupted pixels: higher is better) and the
    pick's ``selected``.  ``errors``: genotype -> held-out mean squared error.

    With ``fixed`` (a member's genotype, the task's fixed network) and ``se``
    (genotype -> standard error of its difference to the fixed network), only
    members whose error is below the fixed network's by more than ``margin``
    standard errors compete; when none is, the fixed network is the pick."""
    for m in members:
        e = errors[m.genotype]
        m.selection_psnr = -10.0 * math.log10(e) if 0 < e < float("inf") else float("nan")

    anchored = fixed is not None and se is not None and any(m.genotype == fixed for m in members)

    def eligible(i: int) -> bool:
        g = members[i].genotype
        if not anchored or g == fixed:
            return True
        s = se.get(g, float("nan"))
        return math.isfinite(s) and errors[fixed] - errors[g] > margin * s

    pool = [i for i in range(len(members)) if eligible(i)]
    order = sorted(pool, key=lambda i: (errors[members[i].genotype],
                                        members[i].metric_value if math.isfinite(
                                            members[i].metric_value) else float("inf"), i))
    members[order[0]].selected = True
    return order[0]
