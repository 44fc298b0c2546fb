"""The image-specific search pipeline (DESIGN §1, §5).

score -> cohort -> train small -> select -> restore.  Data flows one way:
the corrupted observation and candidate genotypes go in, a chosen genotype
and the final DIP result come out.  Ground truth, when given, is only passed
to the final DIP run to record PSNR; no decision reads it.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .device import seeded
from .dip import (DIPResult, DIPSettings, EarlyStopping, fit_dip, fit_dip_group, graph_group_step, make_input_code,
                  resolve_precision)
from .errors import InputError
from .genotype import Genotype, builtin_genotypes, random_genotypes, read_genotypes
from .network import build_network
from .quality import psnr, rgb_to_y
from .kernels import spectral_scores
from .spectral import canonical_metric
from .tasks import Observation

__all__ = [
    "TASK_ITERATIONS",
    "SearchSettings",
    "PRESETS",
    "preset",
    "CohortMember",
    "SearchResult",
    "candidate_list",
    "score_candidates",
    "select_member",
    "run_search",
    "genotype_seed",
]

# The paper's DIP iteration counts per task (DESIGN §3.4, §6).
TASK_ITERATIONS = {"denoise": 1200, "inpaint": 9500, "sr": 4500}
DEFAULT_METRIC = "psd_db_strip_mse"


@dataclass(frozen=True)
class SearchSettings:
    """Every knob of the search.  ``None`` iteration counts mean the task's paper count.

    - ``width``: channels W of every candidate network.
    - ``candidates``: ``"builtin"`` (the 522-genotype NAS dataset), ``"random"``
      (``num_candidates`` random valid genotypes) or a CSV path.
    - ``num_candidates``: how many to score (a seeded sample of the list when
      smaller than it; ``None`` = all of the list).
    - ``cohort_size``: K best-scoring candidates trained on the small problem.
    - ``cohort_iterations`` / ``final_iterations``: DIP steps per stage.
    - ``small_side``: shorter side (px) of the network output in the cohort stage.
    - ``early_stopping``: ES-WMV detector for the final run (None = off);
      ``cohort_early_stopping`` the same for the cohort runs.
    - ``cohort_together``: train the cohort together (:func:`fit_dip_group`:
      one program, or one shard per core on an eager CPU run) rather than one
      member after another (same trajectories either way).
    - ``compile``: compile the DIP step (None = automatic, see
      :func:`isnas_fast.dip.should_compile`; on CUDA the cohort trained
      together is then replayed as one CUDA graph instead, see
      :func:`isnas_fast.dip.graph_group_step`); ``precision``: fp32 | tf32 | bf16
      (None = tf32 on CUDA, fp32 elsewhere; :func:`isnas_fast.dip.resolve_precision`).
    - ``cuda_graph``: replay every DIP step (cohort and final run) as a CUDA
      graph instead of compiling it (CUDA only; no compile time: on an H200 a
      1200-step 512x512 bf16 run took 29.9 s this way against 64.6 s compiled
      from a cold cache, 16.4 s from a warm one).
    """

    width: int = 128
    candidates: Union[str, Path] = "builtin"
    num_candidates: Optional[int] = None
    cohort_size: int = 15
    metric: str = DEFAULT_METRIC
    cohort_iterations: Optional[int] = None
    final_iterations: Optional[int] = None
    small_side: int = 64
    early_stopping: Optional[EarlyStopping] = None
    cohort_early_stopping: Optional[EarlyStopping] = None
    cohort_together: bool = True
    compile: Optional[bool] = None
    precision: Optional[str] = None
    score_batch: int = 16
    cuda_graph: bool = False

    def validate(self) -> "SearchSettings":
        """Check ranges; returns self with the metric name canonicalised."""
        if self.width < 16 or self.width % 16:
            raise InputError(f"width must be a positive multiple of 16, got {self.width}")
        if self.num_candidates is not None and self.num_candidates < 1:
            raise InputError(f"number of candidates must be >= 1, got {self.num_candidates}")
        if self.cohort_size < 1:
            raise InputError(f"cohort size must be >= 1, got {self.cohort_size}")
        for name in ("cohort_iterations", "final_iterations"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise InputError(f"{name.replace('_', ' ')} must be >= 1, got {v}")
        resolve_precision(self.precision, torch.device("cpu"))  # checks the name; None resolves per run
        if self.cuda_graph and self.compile:
            raise InputError("compile and cuda_graph are alternatives (a compiled GPU step already replays "
                             "CUDA graphs): choose one")
        if self.small_side < 64 or self.small_side % 32:
            raise InputError(f"small side must be a multiple of 32 and >= 64, got {self.small_side}")
        return replace(self, metric=canonical_metric(self.metric))


PRESETS: dict[str, SearchSettings] = {
    # The paper's setting (DESIGN §1, §6): for a GPU.
    "paper": SearchSettings(),
    # CPU-friendly: a narrow network, 32 of the 522 genotypes, a cohort of 4
    # trained 300 steps at 64 px; the final run keeps the task's full step
    # count (DESIGN §7: the metric predicts quality only at those counts) and
    # stops by the ES-WMV detector when the output stops changing.
    "quick": SearchSettings(
        width=16, num_candidates=32, cohort_size=4, cohort_iterations=300,
        early_stopping=EarlyStopping(window=100, patience=300),
    ),
}


def preset(name: str, **overrides: object) -> SearchSettings:
    """A preset's settings with ``overrides`` (None values are ignored)."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    kw = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(kw) - set(SearchSettings.__dataclass_fields__)
    if unknown:
        raise InputError(f"unknown search setting(s): {', '.join(sorted(unknown))}")
    return replace(PRESETS[name], **kw).validate()


def genotype_seed(seed: int, genotype: Union[Genotype, str]) -> int:
    """A per-architecture seed: the same genotype gets the same initialisation
    and input code whatever its position in a list."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(genotype).encode())) % (2**31 - 1)


def candidate_list(settings: SearchSettings, seed: int = 0) -> tuple[list[Genotype], int]:
    """The candidates to score and how many invalid rows were skipped."""
    src = settings.candidates
    skipped = 0
    if isinstance(src, str) and src == "builtin":
        pool = builtin_genotypes()
    elif isinstance(src, str) and src == "random":
        return random_genotypes(settings.num_candidates or 64, seed), 0
    else:
        pool, skipped = read_genotypes(src, skip_invalid=True)
    n = settings.num_candidates
    if n is not None and n < len(pool):
        g = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(len(pool), generator=g)[:n].sort().values.tolist()
        pool = [pool[i] for i in idx]
    return pool, skipped


def _scoring_input_channels(observation: Observation) -> int:
    # ISNAS-DIP feeds a code with the image's channel count (DESIGN §3.1).
    return int(observation.y.shape[1])


def score_candidates(
    observation: Observation,
    genotypes: Sequence[Genotype],
    metrics: Sequence[str],
    *,
    width: int = 128,
    seed: int = 0,
    batch: int = 16,
    device: torch.device | None = None,
    backend: str | None = None,
    quiet: bool = False,
) -> Tensor:
    """Score each genotype by its freshly initialised network's random output.

    One forward pass per candidate (train-mode BatchNorm, no grad) on a code
    ``z ~ U(0, 0.1)`` of the output size; outputs go through the task's
    scoring view and are compared with the corrupted image ``observation.y``.
    Returns a float64 tensor (N, len(metrics)); lower is better.
    """
    device = device or observation.y.device
    obs = observation.to(device)
    c = _scoring_input_channels(obs)
    H, W = obs.output_size
    y = obs.y[0]
    metrics = [canonical_metric(m) for m in metrics]
    rows: list[Tensor] = []
    pending: list[Tensor] = []
    rand_gen = torch.Generator().manual_seed(int(seed))

    def flush() -> None:
        if pending:
            rows.append(spectral_scores(y, torch.cat(pending), metrics, backend_name=backend,
                                        generator=rand_gen).cpu())
            pending.clear()

    for g in tqdm(genotypes, desc="score", disable=quiet, leave=False, unit="net"):
        s = genotype_seed(seed, g)
        with seeded(s, device):
            net = build_network(g, c, c, width, device=device)
        z = make_input_code(c, (H, W), s, device=device)
        with torch.no_grad():
            pending.append(obs.scoring_view(net.train()(z)).float())
        del net
        if len(pending) >= batch:
            flush()
    flush()
    return torch.cat(rows).to(torch.float64)


def selection_weights(values: Tensor) -> Tensor:
    """DESIGN §5: ``w_i = (max m - m_i) / (max m - min m)``; all equal -> uniform."""
    v = values.to(torch.float64)
    span = v.max() - v.min()
    if not torch.isfinite(span) or span <= 0:
        return torch.ones_like(v)
    return (v.max() - v) / span


def select_member(outputs: Tensor, metric_values: Tensor, *, y_channel: bool = False) -> tuple[int, Tensor, Tensor]:
    """Pick the output closest (PSNR) to the metric-weighted average of all outputs.

    ``outputs``: (K, C, H, W) smoothed outputs of the cohort; ``metric_values``:
    (K,), lower is better.  Returns ``(index, psnr_to_average (K,), average
    (1, C, H, W))``.  ``y_channel`` compares on the Y channel (RGB SR).
    """
    w = selection_weights(metric_values).to(outputs.device)
    avg = (w.view(-1, 1, 1, 1) * outputs.to(torch.float64)).sum(0, keepdim=True) / w.sum()
    avg = avg.to(outputs.dtype)
    a, b = (outputs, avg.expand_as(outputs))
    if y_channel and outputs.shape[1] == 3:
        a, b = rgb_to_y(a), rgb_to_y(b)
    scores = psnr(a, b)
    # Ties (identical outputs) -> the better metric value wins, then list order.
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), float(metric_values[i]), i))
    return order[0], scores, avg


@dataclass
class CohortMember:
    """One cohort member: its genotype, metric value and selection score (PSNR to the average, dB)."""

    genotype: Genotype
    metric_value: float
    selection_psnr: float = float("nan")
    selected: bool = False
    train_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "genotype": str(self.genotype),
            "metric_value": self.metric_value,
            "selection_psnr": self.selection_psnr,
            "selected": self.selected,
            "train_seconds": round(self.train_seconds, 3),
        }


@dataclass
class SearchResult:
    """What the search found and the final restoration."""

    genotype: Genotype
    cohort: list[CohortMember]
    final: DIPResult
    timings_s: dict[str, float]
    num_scored: int
    num_skipped_invalid: int
    metric: str
    scores: Optional[Tensor] = field(default=None, repr=False)


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
    """Run the whole ISNAS-DIP method on one corrupted observation (DESIGN §1).

    ``ground_truth`` (1, C, H, W) is forwarded to the final DIP run for its
    PSNR curve only.
    """
    settings = settings.validate()
    say = log or (lambda msg: None)
    device = torch.device(device or observation.y.device)
    if settings.cuda_graph and device.type != "cuda":
        raise InputError(f"cuda_graph needs a CUDA device, not {device.type} (leave it off, or use --device cuda)")
    task_name = observation.task.name
    timings: dict[str, float] = {}

    t = time.perf_counter()
    genotypes, skipped = candidate_list(settings, seed)
    if skipped:
        say(f"skipped {skipped} genotype(s) with an invalid upsampling index")
    say(f"scoring {len(genotypes)} candidate(s) with {settings.metric}")
    scores = score_candidates(observation, genotypes, [settings.metric], width=settings.width, seed=seed,
                              batch=settings.score_batch, device=device, quiet=quiet)[:, 0]
    timings["score"] = time.perf_counter() - t

    k = min(settings.cohort_size, len(genotypes))
    order = sorted(range(len(genotypes)), key=lambda i: (float(scores[i]), genotypes[i]))[:k]
    cohort = [CohortMember(genotypes[i], float(scores[i])) for i in order]

    t = time.perf_counter()
    small = observation.resized(settings.small_side).to(device)
    c = _scoring_input_channels(observation)
    cohort_iters = settings.cohort_iterations or TASK_ITERATIONS[task_name]
    if k > 1:
        say(f"training a cohort of {k} at {small.output_size[0]}x{small.output_size[1]} for {cohort_iters} steps")
        seeds = [genotype_seed(seed, m.genotype) for m in cohort]
        nets = []
        for member, s in zip(cohort, seeds):
            with seeded(s, device):
                nets.append(build_network(member.genotype, c, c, settings.width, device=device))
        dip = DIPSettings(cohort_iters)
        common = dict(early_stopping=settings.cohort_early_stopping, compile=settings.compile,
                      precision=settings.precision)
        if settings.cohort_together:
            graph = settings.cuda_graph or graph_group_step(device, settings.compile, len(nets))
            results = fit_dip_group(nets, small, dip, seeds=seeds, quiet=quiet, desc="cohort", cuda_graph=graph,
                                    **common)
            for member, res in zip(cohort, results):
                member.train_seconds = res.seconds / len(cohort)
        else:
            results = []
            for member, net, s in zip(cohort, nets, seeds):
                results.append(fit_dip(net, small, dip, seed=s, quiet=quiet, desc=f"cohort {len(results) + 1}/{k}",
                                       cuda_graph=settings.cuda_graph, **common))
                member.train_seconds = results[-1].seconds
        outputs = [res.output[0] for res in results]
        idx, sel_psnr, _ = select_member(torch.stack(outputs), torch.tensor([m.metric_value for m in cohort]),
                                         y_channel=task_name == "sr")
        for m, p in zip(cohort, sel_psnr.tolist()):
            m.selection_psnr = p
    else:
        idx = 0
    cohort[idx].selected = True
    timings["cohort"] = time.perf_counter() - t

    chosen = cohort[idx].genotype
    t = time.perf_counter()
    final_iters = settings.final_iterations or TASK_ITERATIONS[task_name]
    say(f"restoring with {chosen} for {final_iters} steps")
    s = genotype_seed(seed, chosen)
    with seeded(s, device):
        net = build_network(chosen, c, c, settings.width, device=device)
    final = fit_dip(net, observation.to(device), DIPSettings(final_iters), seed=s, ground_truth=ground_truth,
                    early_stopping=settings.early_stopping, compile=settings.compile,
                    precision=settings.precision, quiet=quiet, desc="restore", cuda_graph=settings.cuda_graph)
    timings["final"] = time.perf_counter() - t
    return SearchResult(chosen, cohort, final, timings, len(genotypes), skipped, settings.metric, scores)
