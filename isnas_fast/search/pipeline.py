"""The image-specific search (docs/design.md §1): score -> cohort -> train small ->
select -> restore.

Data flows one way: the corrupted observation and the candidate genotypes go
in, each metric's cohort and pick and the final :class:`~isnas_fast.trained.TrainedRun`
come out.  Ground truth, when given, is only passed to the final DIP run to
record PSNR; no decision reads it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from ..dip import DIPResult, blend_results, check_step_options, merge_restarts
from ..dip.anchor import anchor_results
from ..genotype import Genotype
from ..network import baseline_input_channels, resolve_architecture
from ..tasks import Observation, bicubic_upsample
from ..trained import TrainedRun
from .candidates import candidate_list, restart_seed
from .cohort import CohortMember, rank_cohort, select_in_cohort, train_cohort
from .scoring import score_candidates, search_input_channels
from .selection import selection_weights
from .validation import (HOLDOUT_FRACTION, fixed_genotype, heldout_scores, holdout_mask, holds_kept_stop,
                         select_validated, snapshot_steps, unranked_reason, validation_problem, with_fixed_network)
from .settings import BLEND_WEIGHT, FAST_FIT_STEPS, TASK_ITERATIONS, SearchSettings
from .training import GroupMember, train_group

__all__ = ["SearchResult", "Ensemble", "run_search", "search_picks", "restored_genotypes", "complete_search",
           "train_final", "train_finals", "ensemble_average", "blend_runs"]



@dataclass
class SearchResult:
    """What the search found and the final restoration.

    ``metrics``: the scoring metrics, in order; ``cohorts`` / ``picks``: each
    metric's cohort table (best metric value first) and selected genotype;
    ``genotype`` / ``cohort`` / ``metric``: those of the first metric, whose
    pick is restored in ``final``.  ``scores``: (N, len(metrics)) float64 for
    ``candidates``.  ``stage_sizes``: per stage, the (H, W) of the network
    output and of the observation it fitted.  ``finals``: the full-size run
    of each restored genotype by its text (the first metric's pick; every
    metric's with ``final="all"``; the ensemble's members).  ``ensemble``:
    with ``ensemble`` > 1, the averaged output of the best cohort members.
    """

    genotype: Genotype
    cohort: list[CohortMember]
    final: Optional[TrainedRun]
    timings_s: dict[str, float]
    num_scored: int
    num_skipped_invalid: int
    metric: str
    metrics: tuple[str, ...] = ()
    cohorts: dict[str, list[CohortMember]] = field(default_factory=dict)
    picks: dict[str, Genotype] = field(default_factory=dict)
    candidates: list[Genotype] = field(default_factory=list, repr=False)
    scores: Optional[Tensor] = field(default=None, repr=False)
    stage_sizes: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    finals: dict[str, TrainedRun] = field(default_factory=dict)
    ensemble: Optional["Ensemble"] = None
    stop_start: int = 0
    stop_start_met_by: int = 0

    def final_settings(self, settings: SearchSettings) -> SearchSettings:
        """``settings`` for the full-size runs: with the validated selection, the
        discrepancy stop does not fire before ``stop_start``, the step where the
        pick's held-out error was least on the cohort problem (a fast network
        on a flat image fits the noise level long before its output is best);
        with ``stop_start_met_by``, only when the noise level is reached by
        that step (:class:`~isnas_fast.dip.EarlyStopping`)."""
        es = settings.early_stopping
        if not self.stop_start or es is None or es.method != "discrepancy" or es.start >= self.stop_start:
            return settings
        return replace(settings, early_stopping=replace(es, start=self.stop_start,
                                                        start_met_by=self.stop_start_met_by))


@dataclass
class Ensemble:
    """The ensemble of the best cohort members (``ensemble`` knob): their
    genotypes (best selection score first), weights and weighted average
    output (1, C, H, W)."""

    genotypes: list[Genotype]
    weights: list[float]
    output: Tensor


def _sizes(obs: Observation) -> dict[str, list[int]]:
    return {"output": list(obs.output_size), "observation": [int(obs.y.shape[-2]), int(obs.y.shape[-1])]}


def train_finals(
    architectures: Sequence[Union[Genotype, str]],
    observation: Observation,
    settings: SearchSettings,
    *,
    in_channels: Optional[int] = None,
    seed: int = 0,
    ground_truth: Tensor | None = None,
    device: torch.device | None = None,
    quiet: bool = False,
    desc: str = "restore",
    anchor: Optional[str] = None,
) -> list[TrainedRun]:
    """Train ``architectures`` at full size, together, with the settings'
    final-run knobs (``final_iterations``, ``early_stopping``, ``final_width``
    or ``width``, speed options; sized for the image:
    :meth:`~isnas_fast.search.SearchSettings.for_image`); one
    :class:`~isnas_fast.trained.TrainedRun` each, in order.

    ``in_channels``: channels of the input code (default: the image's, as the
    search uses, and 32 for a baseline given by name, as NAS-DIP and DIP feed it).  Each network and
    its code are seeded by its genotype
    (:func:`~isnas_fast.search.candidates.genotype_seed`), so a run does not
    depend on the others trained beside it (up to the rounding of the CPU
    threads it runs on).  With ``restarts`` R > 1 each architecture trains R
    times from different starts (:func:`~isnas_fast.search.candidates.restart_seed`;
    the first is the one-start run), one start after another, and its run is
    their merge (:func:`~isnas_fast.dip.restarts.merge_restarts`).  ``anchor``
    (``"bicubic"``, super-resolution only): at least two starts, their merge shrunk
    toward bicubic upsampling of the observation by their agreement
    (:func:`~isnas_fast.dip.anchor.anchor_results`).
    """
    archs = [resolve_architecture(a) for a in architectures]
    device = torch.device(device or observation.y.device)
    obs = observation.to(device)
    settings = settings.for_image(obs.task.name, obs.output_size)
    c = search_input_channels(obs)
    # a baseline by name takes its own code (32 channels), as ``restore(arch=name)`` runs it
    in_chs = [in_channels or baseline_input_channels(name, c) for name in architectures]
    if anchor is not None and (anchor != "bicubic" or obs.task.name != "sr"):
        raise ValueError(f"no anchor {anchor!r} for {obs.task.name}")
    starts = max(settings.restarts, 2) if anchor else settings.restarts
    seeds = [[restart_seed(seed, arch, r) for r in range(starts)] for arch in archs]
    results: list[list[DIPResult]] = [[] for _ in archs]
    for r in range(starts):  # one start of every architecture at a time: one run's memory
        members = [GroupMember(arch, s[r], in_ch, settings.width_of(arch))
                   for arch, s, in_ch in zip(archs, seeds, in_chs)]
        trained = train_group(members, obs, settings.final_run(obs.task.name), device=device,
                              ground_truth=ground_truth, quiet=quiet,
                              desc=desc if starts == 1 else f"{desc}, start {r + 1}/{starts}")
        for runs, t in zip(results, trained):
            runs.append(t.result)
    gt = None if ground_truth is None else ground_truth.to(device)

    def measure(out: Tensor) -> float:
        return float(obs.task.psnr(obs.crop_output(out), obs.crop_output(gt))[0])

    m = measure if gt is not None else None
    if anchor:
        image = bicubic_upsample(obs.y, obs.task.factor)
        merged = [anchor_results(runs, s, image, anchor, m) for runs, s in zip(results, seeds)]
    else:
        merged = [merge_restarts(runs, s, m) for runs, s in zip(results, seeds)]
    return [TrainedRun(network=res.network, z=res.z, genotype=str(arch), width=settings.width_of(arch),
                       in_channels=in_ch, out_channels=c, task=obs.task.name, task_params=dict(obs.task.params()),
                       dip=res, crop=obs.padding.box if obs.padding is not None else None)
            for arch, in_ch, res in zip(archs, in_chs, merged)]


def train_final(architecture: Union[Genotype, str], observation: Observation, settings: SearchSettings,
                **kw) -> TrainedRun:
    """:func:`train_finals` of one architecture."""
    return train_finals([architecture], observation, settings, **kw)[0]


def ensemble_average(members: Sequence[CohortMember], runs: Sequence[TrainedRun]) -> tuple[Tensor, list[float]]:
    """The weighted average (1, C, H, W) of the runs' outputs, with the selection's
    weights over these members (docs/design.md §5; uniform when they are all zero)."""
    w = selection_weights(torch.tensor([m.metric_value for m in members]))
    if float(w.sum()) <= 0:
        w = torch.ones_like(w)
    w = w / w.sum()
    outs = torch.stack([r.dip.output[0].to(torch.float64) for r in runs])
    avg = (w.view(-1, 1, 1, 1).to(outs.device) * outs).sum(0, keepdim=True)
    return avg.to(torch.float32).clamp(0, 1), w.tolist()


def search_picks(
    observation: Observation,
    settings: SearchSettings,
    *,
    seed: int = 0,
    device: torch.device | None = None,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """The search up to its picks (docs/design.md §1 steps 1-4), nothing trained at full size.

    Every metric of ``settings.metrics`` is scored in one pass; the union of
    their cohorts is trained once on the cohort problem
    (:meth:`~isnas_fast.tasks.Observation.cohort_problem`); each metric
    selects its pick.  The result's ``final`` is None and ``finals`` empty:
    :func:`run_search` restores the picks, a suite may train them beside
    other runs (:func:`restored_genotypes` says which).
    """
    settings = settings.validate()
    say = log or (lambda msg: None)
    device = torch.device(device or observation.y.device)
    check_step_options(settings.compile, settings.cuda_graph, device)
    metrics = settings.metrics
    timings: dict[str, float] = {}

    t = time.perf_counter()
    genotypes, skipped = candidate_list(settings.candidates, settings.num_candidates, seed)
    if skipped:
        say(f"skipped {skipped} genotype(s) with an invalid upsampling index")
    say(f"scoring {len(genotypes)} candidate(s) with {', '.join(metrics)}")
    scores = score_candidates(observation, genotypes, metrics, width=settings.width, seed=seed,
                              batch=settings.score_batch, device=device, quiet=quiet)
    timings["score"] = time.perf_counter() - t

    t = time.perf_counter()
    k = min(settings.cohort_size, len(genotypes))
    cohorts = {m: rank_cohort(genotypes, scores[:, j], k) for j, m in enumerate(metrics)}
    small = observation.cohort_problem(settings.small_side).to(device)
    stop_start = met_by = 0
    why = unranked_reason(settings, observation.task) if settings.selection == "validated" else None
    if settings.selection == "validated" and why is None:
        picks, best_at = _validated_picks(cohorts, observation, small, settings, seed=seed, device=device,
                                          quiet=quiet, say=say)
        pick = picks[metrics[0]]
        if not isinstance(pick, str):
            stop_start = best_at[pick]
        elif holds_kept_stop(settings, observation.task):
            # the kept NAS-DIP: its cohort run's best step, where the discrepancy stop fires early
            stop_start, met_by = best_at[fixed_genotype(observation.task.name)], FAST_FIT_STEPS
    elif settings.selection == "validated":
        picks = _fixed_picks(cohorts, observation, settings, seed=seed, device=device, say=say, why=why)
    else:
        picks = _paper_picks(cohorts, observation, small, settings, seed=seed, device=device, quiet=quiet, say=say)
    timings["cohort"] = time.perf_counter() - t
    stage_sizes = {"score": _sizes(observation), "cohort": _sizes(small), "final": _sizes(observation)}
    return SearchResult(
        genotype=picks[metrics[0]], cohort=cohorts[metrics[0]], final=None, timings_s=timings,
        num_scored=len(genotypes), num_skipped_invalid=skipped, metric=metrics[0], metrics=metrics,
        cohorts=cohorts, picks=picks, candidates=genotypes, scores=scores, stage_sizes=stage_sizes,
        stop_start=stop_start, stop_start_met_by=met_by,
    )


def _paper_picks(cohorts: dict[str, list[CohortMember]], observation: Observation, small: Observation,
                 settings: SearchSettings, *, seed: int, device: torch.device, quiet: bool,
                 say: Callable[[str], None]) -> dict[str, Genotype]:
    """The paper's selection (docs/design.md §5): the union of the cohorts trains once
    on the cohort problem; each metric picks the member closest to its cohort's
    metric-weighted average output."""
    union = list(dict.fromkeys(member.genotype for c in cohorts.values() for member in c))
    results = {}
    if any(len(c) > 1 for c in cohorts.values()):
        h, w = small.output_size
        iters = settings.cohort_iterations or TASK_ITERATIONS[observation.task.name]
        say(f"training a cohort of {len(union)} at {w}x{h} for {iters} steps")
        results = train_cohort(union, small, settings, seed=seed, device=device, quiet=quiet)
    on_y = observation.task.psnr_on_y(observation.channels)
    return {m: members[select_in_cohort(members, results, y_channel=on_y)].genotype
            for m, members in cohorts.items()}


def _join_fixed(cohorts: dict[str, list[CohortMember]], observation: Observation, settings: SearchSettings, *,
                seed: int, device: torch.device) -> Genotype:
    """Append the task's NAS-DIP genotype, scored like the candidates, to every cohort
    (in place) unless it is there; returns that genotype."""
    fixed = fixed_genotype(observation.task.name)
    anchor_scores = score_candidates(observation, [fixed], list(cohorts), width=settings.width, seed=seed,
                                     batch=1, device=device, quiet=True)
    for j, members in enumerate(cohorts.values()):
        with_fixed_network(members, observation.task.name, float(anchor_scores[0, j]))
    return fixed


def _fixed_picks(cohorts: dict[str, list[CohortMember]], observation: Observation, settings: SearchSettings, *,
                 seed: int, device: torch.device, say: Callable[[str], None], why: str) -> dict[str, Genotype]:
    """The validated selection where nothing can rank the cohort: the task's NAS-DIP
    genotype joins every cohort, untrained members listed as scored, and the pick is
    NAS-DIP's network by name (``"nasdip-sr"``), which the final run feeds its own
    32-channel code, as ``restore(arch="nasdip-sr")`` does.  ``why`` (said) is the
    reason.  Super-resolution has no pixel to hold out: what a searched SR network
    adds below the low-resolution pixels (a pattern the downsampler cannot see)
    changes no measurement of the low-resolution image, so no such measurement can
    justify replacing the fixed network (bench/README.md, "Super-resolution").  A
    cohort far shorter than the final run (the quick preset's 300 steps of a
    9500-step inpainting) ranks networks by how fast they fit, not by what they
    restore at the end (:func:`~isnas_fast.search.validation.cohort_ranks_the_run`)."""
    fixed = _join_fixed(cohorts, observation, settings, seed=seed, device=device)
    say(f"{why}: the pick is NAS-DIP's genotype {fixed}")
    for members in cohorts.values():
        for m in members:
            m.selected = m.genotype == fixed
    return {m: f"nasdip-{observation.task.name}" for m in cohorts}


def _validated_picks(cohorts: dict[str, list[CohortMember]], observation: Observation, small: Observation,
                     settings: SearchSettings, *, seed: int, device: torch.device, quiet: bool,
                     say: Callable[[str], None]) -> tuple[dict[str, Genotype], dict[Genotype, int]]:
    """The "validated" selection (:mod:`~isnas_fast.search.validation`): the task's
    NAS-DIP genotype joins every cohort (scored like the candidates), the union
    fits the cohort problem with held-out pixels, and each metric's pick is
    NAS-DIP's genotype unless members beat its held-out error by more than the
    margin (:func:`~isnas_fast.search.validation.select_validated`): then the
    least error among those.  Fills ``cohorts`` in place; returns the picks
    and, per member, the step of its least held-out error."""
    fixed = _join_fixed(cohorts, observation, settings, seed=seed, device=device)
    union = list(dict.fromkeys(member.genotype for c in cohorts.values() for member in c))
    held = holdout_mask(small, seed)
    iters = settings.cohort_iterations or TASK_ITERATIONS[observation.task.name]
    h, w = small.output_size
    say(f"training a cohort of {len(union)} at {w}x{h} for {iters} steps, {HOLDOUT_FRACTION:.0%} of the pixels "
        "held out to validate")
    results = train_cohort(union, validation_problem(small, held), replace(settings, cohort_iterations=iters),
                           seed=seed, device=device, quiet=quiet, snapshots=snapshot_steps(iters))
    scores = heldout_scores({g: results[g] for g in union}, small, held, fixed=fixed)
    errors = {g: sc.error for g, sc in scores.items()}
    se = {g: sc.se_vs_fixed for g, sc in scores.items()}
    picks = {}
    for m, members in cohorts.items():
        for member in members:
            member.train_seconds = results[member.genotype].seconds
        pick = members[select_validated(members, errors, fixed=fixed, se=se)].genotype
        # NAS-DIP's genotype kept: its network by name, fed its own 32-channel code, as
        # ``restore(arch="nasdip-<task>")`` runs it (no stop start: its run is that one)
        picks[m] = f"nasdip-{observation.task.name}" if pick == fixed else pick
    return picks, {g: sc.at for g, sc in scores.items()}


def _ensemble_members(search: SearchResult, settings: SearchSettings) -> list[CohortMember]:
    if settings.ensemble <= 1:
        return []
    # best selection score first (the pick); members never scored (a cohort of one) last
    ranked = sorted(search.cohort, key=lambda m: (m.selection_psnr != m.selection_psnr, -m.selection_psnr))
    return ranked[: settings.ensemble]


def restored_genotypes(search: SearchResult, settings: SearchSettings) -> list[Genotype]:
    """What the final stage trains at full size: the first metric's pick, every
    metric's with ``final="all"``, the ensemble's members; each once, the pick first."""
    restored = [search.genotype]
    if settings.final == "all":
        restored += [search.picks[m] for m in search.metrics]
    restored += [m.genotype for m in _ensemble_members(search, settings)]
    return list(dict.fromkeys(restored))


def blend_runs(run: TrainedRun, partner: TrainedRun, ground_truth: Tensor | None,
               observation: Observation, names: Optional[Sequence[str]] = None) -> TrainedRun:
    """``run`` blended with ``partner`` (``blend``): one run whose network is their
    :class:`~isnas_fast.dip.BlendedNetwork` on ``run``'s code, ``partner`` weighted
    :data:`~isnas_fast.search.settings.BLEND_WEIGHT`, whose result is the weighted mean of
    the two images.  ``names``: the two runs' names in the report (default their genotypes)."""
    assert run.dip is not None and partner.dip is not None
    gt = None if ground_truth is None else ground_truth.to(run.dip.output.device)

    def measure(out: Tensor) -> float:
        task = observation.task
        return float(task.psnr(observation.crop_output(out), observation.crop_output(gt))[0])
    dip = blend_results([run.dip, partner.dip], list(names or (run.genotype, partner.genotype)),
                        [1.0 - BLEND_WEIGHT, BLEND_WEIGHT], measure if gt is not None else None)
    return replace(run, network=dip.network, dip=dip, partner=partner)


def complete_search(search: SearchResult, settings: SearchSettings, runs: Sequence[TrainedRun],
                    seconds: float, blended: Optional[TrainedRun] = None) -> SearchResult:
    """``search`` with its final stage: ``runs`` of :func:`restored_genotypes`, in order;
    ``blended``: the pick's run blended with its partner's (:func:`blend_runs`), which
    becomes ``final``."""
    finals = {str(g): r for g, r in zip(restored_genotypes(search, settings), runs)}
    if blended is not None:
        finals[str(search.genotype)] = blended
    members = _ensemble_members(search, settings)
    ensemble = None
    if len(members) > 1:
        output, weights = ensemble_average(members, [finals[str(m.genotype)] for m in members])
        ensemble = Ensemble([m.genotype for m in members], weights, output)
    return replace(search, final=finals[str(search.genotype)], finals=finals, ensemble=ensemble,
                   timings_s={**search.timings_s, "final": seconds})


def run_search(
    observation: Observation,
    settings: SearchSettings,
    *,
    seed: int = 0,
    ground_truth: Tensor | None = None,
    device: torch.device | None = None,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """Run the whole ISNAS-DIP method on one corrupted observation (docs/design.md §1).

    :func:`search_picks`, then the first metric's pick restored at full size
    (and every pick with ``final="all"``, the ensemble with ``ensemble``).
    ``ground_truth`` (1, C, H, W) is forwarded to the final DIP runs for
    their PSNR curves only.
    """
    say = log or (lambda msg: None)
    settings = settings.validate().for_image(observation.task.name, observation.output_size)
    device = torch.device(device or observation.y.device)
    search = search_picks(observation, settings, seed=seed, device=device, quiet=quiet, log=log)
    t = time.perf_counter()
    restored = restored_genotypes(search, settings)
    iters = settings.final_iterations or TASK_ITERATIONS[observation.task.name]
    say(f"restoring with {', '.join(map(str, restored))} for {iters} steps")
    anchor = settings.anchor_for(observation.task.name)
    if anchor:
        say(f"{settings.starts_for(observation.task.name)} random starts, their mean shrunk toward {anchor} "
            "upsampling by their agreement")
    runs = train_finals(restored, observation, search.final_settings(settings), seed=seed,
                        ground_truth=ground_truth, device=device,
                        quiet=quiet, anchor=anchor)
    partner = settings.partner(observation.task.name, observation.output_size)
    blended = None
    if partner is not None:
        say(f"blending with {partner}: training it for {iters} steps")
        # the partner as ``restore(arch=partner)`` runs it: its own code, stop and starts
        other = train_final(partner, observation, settings, seed=seed, ground_truth=ground_truth, device=device,
                            quiet=quiet, desc=f"restore ({partner})")
        blended = blend_runs(runs[0], other, ground_truth, observation, (str(search.genotype), partner))
    return complete_search(search, settings, runs, time.perf_counter() - t, blended)
