"""The tables of a suite: ``summary.md``, ``summary.csv``, ``per_image.csv``, ``paired.csv``.

* Per method: PSNR and SSIM as mean ± the half width of the 95 % Student-t
  confidence interval over all (image, seed) rows (:func:`~isnas_fast.stats.mean_ci`),
  steps run and seconds per job.
* Per image: each method's mean PSNR over the seeds.
* Paired: ``isnas`` minus each other method on the same (image, seed), the
  mean difference with its t-interval and wins / ties / losses
  (:func:`~isnas_fast.stats.paired_comparison`).

The tasks' references (classical methods without training, e.g. ``bm3d``)
are rows like the others, marked ``†`` and labelled wherever they appear
(``reference`` column in the CSV tables): the paired table shows the gap
between the search and what a user could pick instead.

The header says which early stopping the final runs used (it changes the
ranking a lot), and the lists at the end name the skipped images, the
failed jobs and the jobs not yet run.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..io import atomic_write_text
from ..search import FAST_FIT_STEPS, LARGE_DENOISE, TASK_ITERATIONS, SearchSettings
from ..search.validation import MARGIN_SE, holds_kept_stop, unranked_reason
from ..stats import mean_ci, paired_comparison
from ..tasks import Task
from .images import Skipped
from .jobs import METHOD_LABELS, REFERENCE_LABEL
from .references import REFERENCES

__all__ = ["SummaryContext", "SummaryTables", "summarize", "write_summary", "method_markdown",
           "early_stopping_note", "LEVEL"]

#: Confidence level of every interval.
LEVEL = 0.95
#: What marks a reference method's name in the Markdown tables.
REFERENCE_MARK = "†"


@dataclass
class SummaryContext:
    """What the tables describe besides the rows: the suite's settings and its lists."""

    task: Task
    preset: str
    settings: SearchSettings
    methods: Sequence[str]
    images: Sequence[str]
    seeds: Sequence[int]
    skipped: Sequence[Skipped] = ()
    failed: dict[str, str] = field(default_factory=dict)
    missing: Sequence[str] = ()
    tie: float = 0.0


@dataclass
class SummaryTables:
    """One dict per table row (the CSV columns): ``methods``, ``images`` (per
    image and method), ``paired`` (``isnas`` against each other method) and
    ``restarts`` (per method whose runs averaged several random starts: the
    mean of the starts against the first start alone, paired by job)."""

    methods: list[dict]
    images: list[dict]
    paired: list[dict]
    restarts: list[dict] = field(default_factory=list)


def _selection_note(st: SearchSettings, task: Task) -> str:
    """The selection rule the search ran, in words."""
    if st.selection != "validated":
        return "paper (the output closest to the cohort's metric-weighted average)"
    why = unranked_reason(st, task)
    if why is not None:
        return f"validated: {why}, so the pick is NAS-DIP's genotype"
    kept = (f", its final stop not before its cohort run's best step when it reaches the noise level by step "
            f"{FAST_FIT_STEPS}" if holds_kept_stop(st, task) else "")
    return ("validated (NAS-DIP's genotype joins the cohort and is kept unless a member's error on a fifth "
            f"of the pixels, held out, is lower by more than {MARGIN_SE:g} standard errors, then restored as "
            f"NAS-DIP's network by name{kept}; a searched pick's final stop not before its best step)")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _interval(values: Sequence[float]) -> dict:
    mean, half = mean_ci(values, LEVEL)
    return {"mean": mean, "ci95_half": half, "ci95_low": mean - half, "ci95_high": mean + half}


def summarize(rows: Sequence[dict], context: SummaryContext) -> SummaryTables:
    """The three tables of ``rows`` (the rows of the suite's jobs)."""
    by_method = {m: [r for r in rows if r["method"] == m] for m in context.methods}
    methods = []
    for m, rs in by_method.items():
        p, s = _interval([r["psnr"] for r in rs]), _interval([r["ssim"] for r in rs])
        methods.append({
            "method": m, "label": METHOD_LABELS[m], "reference": m in REFERENCES, "n": len(rs),
            **{f"psnr_{k}": v for k, v in p.items()}, **{f"ssim_{k}": v for k, v in s.items()},
            "psnr_png_mean": _mean([r["psnr_png"] for r in rs]),
            "psnr_png_gap": max((abs(r["psnr_png"] - r["psnr"]) for r in rs), default=float("nan")),
            "steps_run_mean": _mean([r["iterations"]["run"] for r in rs if r.get("iterations")]),
            "seconds_per_job": _mean([r["timings_s"]["total"] for r in rs]),
        })
    images = []
    for image in context.images:
        for m in context.methods:
            rs = [r for r in by_method[m] if r["image"] == image]
            p = _interval([r["psnr"] for r in rs])
            images.append({"image": image, "method": m, "n": len(rs), "psnr_mean": p["mean"],
                           "psnr_ci95_half": p["ci95_half"], "ssim_mean": _mean([r["ssim"] for r in rs])})
    paired = []
    if "isnas" in by_method:
        ours = {(r["image"], r["seed"]): r["psnr"] for r in by_method["isnas"]}
        for m in context.methods:
            if m == "isnas":
                continue
            pairs = [(ours[(r["image"], r["seed"])], r["psnr"]) for r in by_method[m]
                     if (r["image"], r["seed"]) in ours]
            c = paired_comparison([a for a, _ in pairs], [b for _, b in pairs], tie=context.tie, level=LEVEL)
            paired.append({"method": m, "label": METHOD_LABELS[m], "reference": m in REFERENCES, "n": c.n,
                           "diff_mean": c.mean,
                           "diff_ci95_half": c.half_width, "diff_ci95_low": c.mean - c.half_width,
                           "diff_ci95_high": c.mean + c.half_width, "wins": c.wins, "ties": c.ties,
                           "losses": c.losses})
    restarts = []
    for m, rs in by_method.items():
        pairs = [(r["psnr"], r["restarts"][0]["psnr"]) for r in rs
                 if len(r.get("restarts") or []) > 1 and r["restarts"][0].get("psnr") is not None]
        if pairs:
            c = paired_comparison([a for a, _ in pairs], [b for _, b in pairs], tie=0.0, level=LEVEL)
            restarts.append({"method": m, "label": METHOD_LABELS[m], "n": c.n,
                             "starts": max(len(r["restarts"]) for r in rs if r.get("restarts")),
                             "first_start_mean": _mean([b for _, b in pairs]),
                             "mean_of_starts_mean": _mean([a for a, _ in pairs]), "gain_mean": c.mean,
                             "gain_ci95_low": c.mean - c.half_width, "gain_ci95_high": c.mean + c.half_width,
                             "wins": c.wins, "losses": c.losses})
    return SummaryTables(methods, images, paired, restarts)


def sized_note(settings: SearchSettings, task: Task) -> str:
    """What the settings change for large images, in words ("" when nothing)."""
    big = settings.for_image(task.name, (1 << 15, 1 << 15))
    if big == settings:
        return ""
    return (f" (images of {LARGE_DENOISE.size_text} or more: final width {big.network_width}, "
            f"up to {big.final_iterations} steps)")


def early_stopping_note(settings: SearchSettings, task: Task) -> str:
    """Which early stopping the final runs used, in words."""
    steps = settings.final_iterations or TASK_ITERATIONS[task.name]
    es = settings.early_stopping
    if es is None:
        return f"off: every final run takes {steps} steps"
    method = es.method
    details = es.parameters()
    name = {"discrepancy": "the discrepancy principle", "wmv": "ES-WMV", "emv": "ES-EMV",
            "shift": "shift validation", "heldout": "the held-out-pixel stop (a twin run with a fifth of the "
            "pixels held out finds the step; no noise level read)", "at": "a fixed step"}[method]
    return (f"{name} ({', '.join(f'{k} {v:g}' for k, v in details.items())}): each final run stops where "
            f"its detector fires, at most {steps} steps (no ground truth used)")


def _pm(mean: float, half: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if math.isfinite(half) else f"{mean:.{digits}f} (n = 1)"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _seconds(value: float) -> str:
    """Seconds to one decimal, or one significant digit under 0.1 s (a reference's milliseconds)."""
    return f"{value:.1f}" if value >= 0.1 else f"{value:.1g}"


def _name(method: str) -> str:
    """A method's name in the Markdown tables (references marked)."""
    return f"{method} {REFERENCE_MARK}" if method in REFERENCES else method


def method_markdown(tables: SummaryTables) -> str:
    """The per-method table as Markdown (also what the CLI prints)."""
    text = _table(
        ["method", "n", "PSNR (dB)", "SSIM", "steps run", "s per job"],
        [[f"{_name(r['method'])}: {r['label']}", str(r["n"]), _pm(r["psnr_mean"], r["psnr_ci95_half"], 2),
          _pm(r["ssim_mean"], r["ssim_ci95_half"], 4),
          f"{r['steps_run_mean']:.0f}" if r["n"] and math.isfinite(r["steps_run_mean"]) else "–",
          _seconds(r["seconds_per_job"]) if r["n"] else "–"]
         for r in tables.methods])
    if any(r["reference"] for r in tables.methods):
        text += (f"\n\n{REFERENCE_MARK} {REFERENCE_LABEL}: a classical method run on the same inputs, "
                 "what a user could pick instead of DIP")
    return text


def _paired_markdown(tables: SummaryTables) -> str:
    return _table(
        ["isnas − method", "pairs", "mean difference (dB)", "95 % CI", "wins / ties / losses"],
        [[f"{_name(r['method'])}: {r['label']}", str(r["n"]), f"{r['diff_mean']:+.2f}" if r["n"] else "–",
          f"[{r['diff_ci95_low']:+.2f}, {r['diff_ci95_high']:+.2f}]" if math.isfinite(r["diff_ci95_half"]) else "–",
          f"{r['wins']} / {r['ties']} / {r['losses']}"] for r in tables.paired])


def _image_markdown(tables: SummaryTables, context: SummaryContext) -> str:
    cells = {(r["image"], r["method"]): r for r in tables.images}
    return _table(
        ["image", *map(_name, context.methods)],
        [[image, *(f"{cells[(image, m)]['psnr_mean']:.2f}" if cells[(image, m)]["n"] else "–"
                   for m in context.methods)] for image in context.images])


def _png_note(tables: SummaryTables) -> list[str]:
    gap = max((r["psnr_png_gap"] for r in tables.methods if r["n"]), default=float("nan"))
    if not math.isfinite(gap):
        return []
    return [f"Recomputed from the saved images (`restored/`, rounded to their bit depth) the PSNRs differ from "
            f"these by at most {gap:.3f} dB (`psnr_png` in results.jsonl)."]


def _markdown(tables: SummaryTables, context: SummaryContext) -> str:
    st, tk = context.settings, context.task
    params = ", ".join(f"{k} {v:g}" for k, v in tk.params().items() if isinstance(v, (int, float)))
    n_rows = sum(r["n"] for r in tables.methods)
    n_jobs = len(context.images) * len(context.methods) * len(context.seeds)
    parts = [
        "# Suite summary",
        f"- task: {tk.name} ({params}); preset {context.preset}; width {st.width} (DIP skip: 128); "
        f"final steps {st.final_iterations or TASK_ITERATIONS[tk.name]}{sized_note(st, tk)}"
        + (f"; {st.restarts} random starts per full-size run, the mean of their images" if st.restarts > 1 else "")
        + ("; every DIP output read through the clipped-noise readout" if st.clip_readout and tk.name == "denoise"
           else "")
        + (f"; isnas blends its image with {st.blend}'s (weights 2/3 and 1/3) below {LARGE_DENOISE.size_text}"
           if st.blend != "none" and tk.name == "denoise" else "")
        + (f"; isnas trains {st.starts_for(tk.name)} random starts and shrinks their mean toward {st.anchor} "
           "upsampling by how much they agree" if st.anchor_for(tk.name) else ""),
        f"- early stopping: {early_stopping_note(st, tk)}",
        f"- search: {st.num_candidates or 'all'} candidates of {st.candidates}, cohort of {st.cohort_size} "
        f"trained {st.cohort_iterations or TASK_ITERATIONS[tk.name]} steps at {st.small_side} px, metric {st.metric}, "
        f"selection {_selection_note(st, tk)}",
        f"- images: {len(context.images)} ({len(context.skipped)} skipped); seeds: "
        f"{', '.join(map(str, context.seeds))}; rows: {n_rows} of {n_jobs} jobs",
        "",
        "PSNR (dB) and SSIM against the clean image"
        + (" (PSNR on the Y channel for RGB super-resolution)" if tk.name == "sr" else "")
        + f"; mean ± half width of the {LEVEL * 100:g} % Student-t confidence interval over images × seeds.",
        "`cohort-best` reads the ground truth to choose: an oracle, for analysis only, never a method.",
        *_png_note(tables),
        "",
        "## Per method",
        "",
        method_markdown(tables),
        "",
        "## Per image (PSNR in dB, mean over seeds)",
        "",
        _image_markdown(tables, context),
        "",
    ]
    if tables.restarts:
        parts += ["## The image from several random starts against the first start alone (paired by image and seed)",
                  "", _table(["method", "runs", "starts", "first start (dB)", "from the starts (dB)", "gain (dB)",
                          "95 % CI", "wins / losses"],
                         [[r["method"], str(r["n"]), str(r["starts"]), f"{r['first_start_mean']:.2f}",
                           f"{r['mean_of_starts_mean']:.2f}", f"{r['gain_mean']:+.2f}",
                           f"[{r['gain_ci95_low']:+.2f}, {r['gain_ci95_high']:+.2f}]",
                           f"{r['wins']} / {r['losses']}"] for r in tables.restarts]), ""]
    if tables.paired:
        parts += [f"## isnas against each method (paired by image and seed; ties within {context.tie:g} dB)", "",
                  _paired_markdown(tables), ""]
    for title, items in (("Skipped images", [f"{s.source}: {s.reason}" for s in context.skipped]),
                         ("Failed jobs (run the same command again to retry)",
                          [f"{k}: {v}" for k, v in context.failed.items()]),
                         ("Jobs without a row yet", list(context.missing))):
        if items:
            parts += [f"## {title}", "", *(f"- {i}" for i in items), ""]
    return "\n".join(parts)


def _csv(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def write_summary(folder: Path, tables: SummaryTables, context: SummaryContext) -> dict[str, Path]:
    """Write the Markdown summary and the CSV tables (atomically; ``restarts.csv`` only when
    runs averaged several starts); returns name -> path."""
    contents = {"summary.md": _markdown(tables, context), "summary.csv": _csv(tables.methods),
                "per_image.csv": _csv(tables.images), "paired.csv": _csv(tables.paired)}
    if tables.restarts:
        contents["restarts.csv"] = _csv(tables.restarts)
    return {name: atomic_write_text(folder / name, text) for name, text in contents.items()}
