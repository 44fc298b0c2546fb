"""Every knob of the search, declared once (docs/design.md §1, §6).

:class:`SearchSettings` is the one declaration: each field carries, in its
:func:`knob` metadata, the keyword the API takes (``restore``, ``study``,
``suite``), the command-line option and the help text.  The CLI options are
generated from it (:func:`add_knob_arguments`), and so are the API keywords
(:func:`settings_from_options`, :data:`KNOBS`): a new knob is one field.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from ..dip import MAX_RESTARTS, PRECISIONS, DIPSettings, EarlyStopping, RunOptions, check_step_options, resolve_precision
from ..errors import InputError
from ..network import resolve_architecture
from ..kernels.spectral_reference import canonical_metric

__all__ = [
    "TASK_ITERATIONS",
    "LARGE_DENOISE",
    "DIP_SKIP_WIDTH",
    "BLENDS",
    "BLEND_WEIGHT",
    "ANCHORS",
    "FAST_FIT_STEPS",
    "DEFAULT_METRIC",
    "SearchSettings",
    "Knob",
    "KNOBS",
    "PRESETS",
    "preset",
    "settings_from_options",
    "add_knob_arguments",
    "knob_options",
]

# The paper's DIP iteration counts per task (docs/design.md §3.4, §6).
TASK_ITERATIONS = {"denoise": 1200, "inpaint": 9500, "sr": 4500}
DEFAULT_METRIC = "psd_db_strip_mse"
#: The original DIP "skip" network has a fixed width (docs/design.md §3.3).
DIP_SKIP_WIDTH = 128
#: What ``blend`` may name: no partner, or DIP-skip.
BLENDS = ("none", "dip-skip")
#: What ``anchor`` may name: no anchor, or bicubic upsampling (super-resolution).
ANCHORS = ("none", "bicubic")
#: The partner's weight in a blend (the final run's image weighs the rest): chosen on the tuning
#: crops as the largest mean gain among 1/2, 0.6, 2/3 and 3/4 that kept every crop within 0.5 dB
#: of NAS-DIP (bench/README.md, "Blending NAS-DIP with DIP-skip").
BLEND_WEIGHT = 1.0 / 3.0
#: A final run whose residual reaches the noise level by this step fitted the image fast
#: (a flat image): ``fixed_stop_start`` holds its stop to the cohort's best step only then.
FAST_FIT_STEPS = 100


@dataclass(frozen=True)
class SizeRule:
    """What a preset sized by the image (``by_size``) gives a large denoising run: from
    ``pixels`` output pixels on (after padding to multiples of 32), a final network at
    least ``width`` channels wide and ``iterations`` steps (the early stop ends most runs
    sooner).  Chosen by ``bench/size_study.py`` (bench/README.md, "Settings by image size")."""

    pixels: int
    width: int
    iterations: int

    @property
    def size_text(self) -> str:
        """The threshold as a square, in words: ``"192x192 px"``."""
        side = math.isqrt(self.pixels)
        return f"{side}x{side} px"


#: The quick preset's rule: a narrow network fits a 64-128 px image within the paper's 1200 steps,
#: but not a 256 px one; from 192 x 192 px the final run is twice as wide and may run twice as long.
LARGE_DENOISE = SizeRule(pixels=192 * 192, width=32, iterations=2400)
_LARGE = LARGE_DENOISE.size_text
_PAPER_COUNTS = ", ".join(f"{t} {n}" for t, n in TASK_ITERATIONS.items())


@dataclass(frozen=True)
class Knob:
    """One search knob: the settings field ``name``, the API keyword ``api``,
    the CLI option ``flag``; ``kind`` is ``int``, ``str``, ``"choice"``,
    ``"switch"`` (``--x`` / ``--no-x``, unset = the preset's) or
    ``"early_stopping"`` (a switch whose True means the preset's detector); ``none``: what the
    value None means, as ``--help`` states it (None of an ``early_stopping`` knob: off)."""

    name: str
    api: str
    flag: str
    help: str
    kind: Any
    metavar: Optional[str] = None
    choices: Optional[tuple] = None
    none: Optional[str] = None


def knob(default: Any, help: str, *, api: Optional[str] = None, flag: Optional[str] = None, kind: Any = None,
         metavar: Optional[str] = None, choices: Optional[tuple] = None, none: Optional[str] = None) -> Any:
    """A :class:`SearchSettings` field declared as a knob (see :class:`Knob`)."""
    meta = dict(help=help, api=api, flag=flag, kind=kind, metavar=metavar, choices=choices, none=none)
    return field(default=default, metadata={"knob": meta})


@dataclass(frozen=True)
class SearchSettings:
    """Every knob of the search.  ``None`` iteration counts mean the task's paper count.

    The help text of each knob is in its declaration (``isnas-fast restore
    --help`` prints it); :meth:`validate` checks ranges and canonicalises the
    metric names.
    """

    width: int = knob(128, "channels W of every candidate network (a multiple of 16)", metavar="W")
    candidates: Union[str, Path] = knob(
        "builtin", "candidate genotypes: builtin522 (the 522 of the NAS dataset; also 'builtin'), random5000 "
        "(the 5000 random genotypes the paper's search scored), random (N drawn with the seed, N from candidates), "
        "random:N, or a 'u,bits' CSV file", api="models", flag="--models", metavar="LIST")
    num_candidates: Optional[int] = knob(
        None, "how many candidates to score (a seeded sample of the list)", api="candidates",
        flag="--candidates", metavar="N", none="all")
    cohort_size: int = knob(15, "the K best-scoring candidates trained in the cohort stage", metavar="K")
    metric: str = knob(
        DEFAULT_METRIC, "scoring metric(s), comma-separated, e.g. psd_db_strip_mse,psd_strip_hist_emd,random: "
        "scored once, one cohort and pick per metric; the first metric's pick is restored", metavar="M[,M...]")
    cohort_iterations: Optional[int] = knob(
        None, f"DIP steps of each cohort member (the paper's counts: {_PAPER_COUNTS})", metavar="N",
        none="the task's paper count")
    selection: str = knob(
        "paper", "how the cohort's pick is chosen: paper (the output closest to the cohort's metric-weighted "
        "average) or validated (the task's NAS-DIP genotype joins the cohort, each member fits the image with "
        "a fifth of its pixels held out, and a member replaces NAS-DIP's genotype only with a clearly smaller "
        "error on them; kept, NAS-DIP's network is restored as --arch nasdip-<task> restores it; "
        "super-resolution, with no pixel to hold out, and a cohort of under a quarter of the final run's steps, "
        "as the quick preset's inpainting, keep NAS-DIP's network)",
        kind="choice", choices=("paper", "validated"))
    fixed_stop_start: bool = knob(
        False, f"when the validated selection keeps NAS-DIP's network and its final run reaches the noise "
        f"level by step {FAST_FIT_STEPS} (a flat image fitted fast), it does not stop before the step of "
        f"NAS-DIP's least held-out error in the cohort", kind="switch")
    clip_readout: bool = knob(
        False, "denoising: read the final run's output through the clipped-noise readout, which removes the "
        "bias clip(x + n) puts on dark and bright regions (the network fits E[y], not x)", kind="switch")
    final: str = knob(
        "first", "which picks are restored at full size: first (the first metric's) or all (every metric's "
        "distinct pick; the result is the first metric's, the report has every pick's run)", kind="choice",
        choices=("first", "all"))
    ensemble: int = knob(
        1, "restore the K best cohort members (by selection score) at full size and return the average of "
        "their outputs, weighted as the selection weights them (1: the pick alone)", metavar="K")
    restarts: int = knob(
        1, f"train each full-size network R times from different random starts (weights and input code) "
        f"and return the mean of their images, served as one network; R times the final run's time "
        f"(1 to {MAX_RESTARTS})", metavar="R")
    blend: str = knob(
        "none", f"denoising an image under {_LARGE}: dip-skip also trains DIP-skip (width {DIP_SKIP_WIDTH}, its own "
        f"code, stop and starts, as --arch dip-skip runs it) and returns the final run's image and DIP-skip's "
        f"averaged with weights 2/3 and 1/3, served as one network (not with --ensemble above 1, which "
        f"averages cohort members instead); none: the final run alone", kind="choice", choices=BLENDS)
    anchor: str = knob(
        "none", "super-resolution: bicubic trains the final network from at least two random starts (restarts) "
        "and returns bicubic upsampling plus the part of the starts' mean difference from it that the starts "
        "agree on (a pattern the downsampler cannot see differs between starts and falls back to bicubic), "
        "served as one network (not in tiles or with --ensemble above 1); none: the starts' mean",
        kind="choice", choices=ANCHORS)
    final_iterations: Optional[int] = knob(
        None, f"DIP steps of the final run (the paper's counts: {_PAPER_COUNTS})", api="iterations",
        flag="--iterations", metavar="N",
        none=f"the task's paper count; the quick preset denoises images of {_LARGE} or more with up to "
             f"{LARGE_DENOISE.iterations}")
    final_width: Optional[int] = knob(
        None, "channels of the final run's network (a multiple of 16)", metavar="W",
        none=f"the search's width; the quick preset denoises images of {_LARGE} or more with at least "
             f"{LARGE_DENOISE.width}")
    small_side: int = knob(
        64, "shorter side (px) of the cohort stage's problem: of the network output for denoising and "
        "inpainting, of the low-resolution image for super-resolution (never enlarged)", metavar="PX")
    early_stopping: Optional[EarlyStopping] = knob(
        None, "stop the final run early, without ground truth (the discrepancy principle for denoising: the "
        "mean of the last outputs, at most 100 and none from the run's first half, once its residual "
        "reaches the noise level)",
        kind="early_stopping")
    cohort_early_stopping: Optional[EarlyStopping] = knob(
        None, "stop each cohort member early, as the final run would", kind="early_stopping")
    cohort_together: bool = knob(
        True, "train the cohort together (one program, or one shard per core on a CPU) rather than one "
        "member after another; the trajectories are the same", kind="switch")
    compile: Optional[bool] = knob(
        None, "compile the DIP step with torch.compile", kind="switch",
        none="on a GPU; on a CPU only for very long runs, as compiling takes minutes there")
    cuda_graph: Optional[bool] = knob(
        None, "replay every DIP step as a CUDA graph instead of compiling it (CUDA only; no compile time)",
        kind="switch", none="the cohort's on a GPU")
    precision: Optional[str] = knob(
        None, "fp32: float32 math (TF32 off on a GPU); tf32: TF32 convolutions (the default on a GPU); "
        "bf16: autocast (faster on a GPU)", kind="choice", choices=PRECISIONS,
        none="tf32 on a GPU, fp32 on a CPU")
    score_batch: int = knob(16, "candidate outputs scored per batch", metavar="B")
    by_size: bool = knob(
        False, f"size the final run of a large denoise: from {_LARGE}, a network at least "
        f"{LARGE_DENOISE.width} wide and up to {LARGE_DENOISE.iterations} steps, where the final width and step "
        "count are not given", kind="switch")

    @property
    def network_width(self) -> int:
        """Channels of the final run's network: ``final_width``, else the search's ``width``."""
        return self.final_width or self.width

    def width_of(self, architecture: Any) -> int:
        """Channels of the final run's network for ``architecture`` (a genotype or a baseline
        name): DIP-skip's fixed :data:`DIP_SKIP_WIDTH`, else :attr:`network_width`."""
        return DIP_SKIP_WIDTH if resolve_architecture(architecture) == "dip-skip" else self.network_width

    def partner(self, task: str, output_size: tuple[int, int]) -> Optional[str]:
        """The fixed network whose image the final run's is blended with (``blend``) for an
        image of ``task`` whose network output is ``output_size`` (H, W) px, or None: a
        denoise under :data:`LARGE_DENOISE`'s size only (where it was measured), and not
        with an ensemble (``ensemble`` > 1), which averages cohort members instead."""
        h, w = (int(v) for v in output_size)
        if self.blend == "none" or task != "denoise" or h * w >= LARGE_DENOISE.pixels or self.ensemble > 1:
            return None
        return self.blend

    def anchor_for(self, task: str) -> Optional[str]:
        """The classical image a ``task``'s final run is shrunk toward (``anchor``), or None:
        super-resolution only, and not with an ensemble (``ensemble`` > 1)."""
        if self.anchor == "none" or task != "sr" or self.ensemble > 1:
            return None
        return self.anchor

    def starts_for(self, task: str) -> int:
        """Random starts of each full-size network for ``task``: ``restarts``, and at least
        two where :meth:`anchor_for` names an anchor (its weight needs two starts)."""
        return max(self.restarts, 2) if self.anchor_for(task) else self.restarts

    def for_image(self, task: str, output_size: tuple[int, int]) -> "SearchSettings":
        """These settings for one image whose network output is ``output_size`` (H, W) px:
        with ``by_size``, a denoise of :data:`LARGE_DENOISE`'s size or more gets its final
        width (at least the search's) and step count where they are not given.  Idempotent."""
        h, w = (int(v) for v in output_size)
        if not self.by_size or task != "denoise" or h * w < LARGE_DENOISE.pixels:
            return self
        return replace(self, final_width=self.final_width or max(self.width, LARGE_DENOISE.width),
                       final_iterations=self.final_iterations or LARGE_DENOISE.iterations)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The scoring metrics, canonical names, in order (the first decides what is restored)."""
        return tuple(canonical_metric(m) for m in str(self.metric).split(",") if m.strip())

    def validate(self) -> "SearchSettings":
        """Check ranges; returns self with the metric names canonicalised."""
        for name in ("width", "final_width"):
            v = getattr(self, name)
            if name == "final_width" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 16 or v % 16:
                raise InputError(f"{name.replace('_', ' ')} must be a positive multiple of 16, got {v}")
        if self.num_candidates is not None and self.num_candidates < 1:
            raise InputError(f"number of candidates must be >= 1, got {self.num_candidates}")
        if self.cohort_size < 1:
            raise InputError(f"cohort size must be >= 1, got {self.cohort_size}")
        for name in ("cohort_iterations", "final_iterations"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise InputError(f"{name.replace('_', ' ')} must be >= 1, got {v}")
        if isinstance(self.ensemble, bool) or not isinstance(self.ensemble, int) or self.ensemble < 1:
            raise InputError(f"ensemble must be a positive integer, got {self.ensemble!r}")
        if isinstance(self.restarts, bool) or not isinstance(self.restarts, int) \
                or not 1 <= self.restarts <= MAX_RESTARTS:
            raise InputError(f"restarts must be an integer from 1 to {MAX_RESTARTS}, got {self.restarts!r}")
        if self.blend not in BLENDS:
            raise InputError(f"blend must be one of {', '.join(BLENDS)}, got {self.blend!r}")
        if self.anchor not in ANCHORS:
            raise InputError(f"anchor must be one of {', '.join(ANCHORS)}, got {self.anchor!r}")
        if self.score_batch < 1:
            raise InputError(f"score batch must be >= 1, got {self.score_batch}")
        resolve_precision(self.precision, torch.device("cpu"))  # checks the name; None resolves per run
        check_step_options(self.compile, self.cuda_graph)
        if self.small_side < 64 or self.small_side % 32:
            raise InputError(f"small side must be a multiple of 32 and >= 64, got {self.small_side}")
        metrics = self.metrics
        if not metrics:
            raise InputError("no scoring metric given")
        if len(set(metrics)) != len(metrics):
            raise InputError(f"metric listed twice: {','.join(metrics)}")
        return replace(self, metric=",".join(metrics))

    def cohort_run(self, task: str) -> RunOptions:
        """How each cohort member trains for ``task`` (a task name): ``cohort_iterations``
        (the task's paper count when None), ``cohort_early_stopping``, ``cohort_together``
        and the speed options; members are only ranked, never served."""
        return RunOptions(DIPSettings(self.cohort_iterations or TASK_ITERATIONS[task]),
                          early_stopping=self.cohort_early_stopping, compile=self.compile,
                          cuda_graph=self.cuda_graph, precision=self.precision, served=False,
                          together=self.cohort_together)

    def final_run(self, task: str) -> RunOptions:
        """How a full-size run trains for ``task`` (a task name): ``final_iterations`` (the
        task's paper count when None), ``early_stopping``, ``clip_readout`` and the speed options; served."""
        return RunOptions(DIPSettings(self.final_iterations or TASK_ITERATIONS[task]),
                          early_stopping=self.early_stopping, compile=self.compile, cuda_graph=self.cuda_graph,
                          precision=self.precision, clip_readout=self.clip_readout)


def _knob_of(f) -> Knob:
    meta = f.metadata["knob"]
    kind = meta["kind"] or (int if f.type in ("int", "Optional[int]") else str)
    return Knob(name=f.name, api=meta["api"] or f.name, flag=meta["flag"] or "--" + f.name.replace("_", "-"),
                help=meta["help"], kind=kind, metavar=meta["metavar"], choices=meta["choices"], none=meta["none"])


#: Every knob, in declaration order.
KNOBS: tuple[Knob, ...] = tuple(_knob_of(f) for f in fields(SearchSettings) if "knob" in f.metadata)
_BY_API = {k.api: k for k in KNOBS}


PRESETS: dict[str, SearchSettings] = {
    # The paper's setting (docs/design.md §1, §6): for a GPU.
    "paper": SearchSettings(candidates="random5000"),
    # CPU-friendly: a narrow network, 32 of the 522 genotypes, a cohort of 4
    # trained 300 steps at 64 px; the final run keeps the task's full step
    # count (the metric predicts quality only at those counts; a large denoise
    # gets LARGE_DENOISE's wider network and longer budget), stops by
    # the discrepancy principle and reads a denoised output through the
    # clipped-noise readout; a denoise under LARGE_DENOISE's size is blended with
    # DIP-skip's image; a super-resolution is the mean of two starts shrunk toward bicubic
    # upsampling by their agreement (bench/README.md: the measurements behind each choice).
    "quick": SearchSettings(
        width=16, num_candidates=32, cohort_size=4, cohort_iterations=300,
        early_stopping=EarlyStopping(), selection="validated", by_size=True, clip_readout=True, blend="dip-skip",
        anchor="bicubic",
    ),
}


#: The preset restore, study, suite and their commands use when none is named.
DEFAULT_PRESET = "quick"


def _value_text(k: Knob, value: Any) -> str:
    """A knob's value as ``--help`` states it."""
    if value is None:
        return "off" if k.kind == "early_stopping" else (k.none or "none")
    if isinstance(value, EarlyStopping) or value is True:
        return "on"
    if value is False:
        return "off"
    return str(value)


def preset_defaults(k: Knob) -> str:
    """``knob``'s value under each preset, the default preset first: ``"32 (quick), all (paper)"``,
    or the one value when every preset has the same."""
    names = [DEFAULT_PRESET] + [n for n in PRESETS if n != DEFAULT_PRESET]
    texts = {n: _value_text(k, getattr(PRESETS[n], k.name)) for n in names}
    if len(set(texts.values())) == 1:
        return texts[DEFAULT_PRESET]
    return ", ".join(f"{texts[n]} ({n})" for n in names)


def preset(name: str, **overrides: object) -> SearchSettings:
    """A preset's settings with ``overrides`` (field names; None values are ignored)."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    kw = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(kw) - set(SearchSettings.__dataclass_fields__)
    if unknown:
        raise InputError(f"unknown search setting(s): {', '.join(sorted(unknown))}")
    return replace(PRESETS[name], **kw).validate()


def _field_value(k: Knob, value: Any, base: SearchSettings) -> Any:
    """An API value of knob ``k`` as the settings field holds it."""
    if k.kind == "early_stopping":
        if isinstance(value, EarlyStopping):
            return value
        if value is True:
            own = getattr(base, k.name)
            return own if own is not None else EarlyStopping()
        if value is False:
            return None
        raise InputError(f"{k.api} must be True, False or an EarlyStopping, got {value!r}")
    if k.kind == "switch":
        if not isinstance(value, bool):
            raise InputError(f"{k.api} must be True or False, got {value!r}")
        return value
    if k.name == "metric" and isinstance(value, (list, tuple)):
        return ",".join(str(m) for m in value)
    if k.name == "candidates":
        return str(value)
    if k.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InputError(f"{k.api} must be an integer, got {value!r}")
    return value


#: Earlier API keywords of knobs, still taken: the earlier name -> the knob's keyword.
RENAMED_KEYWORDS = {"num_candidates": "candidates"}


def renamed_keywords(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the earlier knob keywords (:data:`RENAMED_KEYWORDS`) under their names;
    both names given raise InputError."""
    out = dict(options)
    for old, new in RENAMED_KEYWORDS.items():
        if old in out:
            value = out.pop(old)
            if out.get(new) is not None and value is not None:
                raise InputError(f"{old}= is the earlier name of {new}=; give one of them")
            if value is not None:
                out[new] = value
    return out


def settings_from_options(preset_name: str, options: Mapping[str, Any]) -> SearchSettings:
    """A preset's settings with API-keyword ``options`` applied (None = the preset's value).

    ``early_stopping=True`` means the preset's detector (or the default one
    if the preset has none), False none.  Unknown keywords raise InputError;
    the earlier names of :data:`RENAMED_KEYWORDS` (``num_candidates``) are taken.
    """
    if preset_name not in PRESETS:
        raise InputError(f"unknown preset {preset_name!r}: choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset_name]
    options = renamed_keywords(options)
    unknown = sorted(set(options) - set(_BY_API))
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)}; search options: {', '.join(_BY_API)}")
    changes = {_BY_API[a].name: _field_value(_BY_API[a], v, base) for a, v in options.items() if v is not None}
    return replace(base, **changes).validate()


def add_knob_arguments(group: argparse._ActionsContainer, *, skip: tuple[str, ...] = ()) -> None:
    """Add one CLI option per knob (default None: the preset's value) to an argparse group."""
    for k in KNOBS:
        if k.api in skip:
            continue
        dest = f"knob_{k.api}"
        if k.kind in ("switch", "early_stopping"):
            group.add_argument(k.flag, dest=dest, action=argparse.BooleanOptionalAction, default=None,
                               help=_help(k))
        elif k.kind == "choice":
            group.add_argument(k.flag, dest=dest, default=None, choices=k.choices, help=_help(k))
        else:
            group.add_argument(k.flag, dest=dest, type=k.kind, default=None, metavar=k.metavar, help=_help(k))


def _help(k: Knob) -> str:
    """A knob's help with its value under each preset (argparse's %% escaped)."""
    return f"{k.help} (default: {preset_defaults(k)})".replace("%", "%%")


def knob_options(args: argparse.Namespace) -> dict[str, Any]:
    """The knob values given on a command line parsed with :func:`add_knob_arguments` (API keywords)."""
    return {k.api: getattr(args, f"knob_{k.api}") for k in KNOBS
            if getattr(args, f"knob_{k.api}", None) is not None}


def knob_parameter_doc() -> str:
    """One line per knob (API keyword: help, the value under each preset) for docstrings."""
    return "\n".join(f"    ``{k.api}``: {k.help} (default: {preset_defaults(k)})." for k in KNOBS)
