"""The plots of a suite (PNG, matplotlib's optional ``plot`` extra):

* ``plots/psnr_per_image.png`` -- each method's PSNR per image (mean over
  seeds, bars from the lowest to the highest seed);
* ``plots/curves-<image>.png`` -- PSNR of the smoothed and the raw output
  over the steps of each method's final run (first seed), the early stop
  marked;
* ``plots/grid-<image>.png`` -- clean, corrupted and each method's output
  (first seed).

The tasks' references (no training) are drawn apart: hatched bars, a
dashed horizontal line at their PSNR in the curves (where it is measured
as the curves are, on every channel), "reference" in their titles.

Drawn with matplotlib's object API (no pyplot, no global backend switch);
each file written atomically.  Without matplotlib nothing is drawn and the
tables are unaffected.
"""
from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io import atomic_write_bytes, load_image
from ..io.files import make_folder
from .jobs import METHOD_LABELS, ORACLE_LABEL, REFERENCE_LABEL
from .references import REFERENCES

__all__ = ["available", "draw"]


def available() -> bool:
    """Whether matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def _legend(method: str) -> str:
    if method in REFERENCES:
        return f"{method}: {REFERENCE_LABEL}"
    return f"{method}: {ORACLE_LABEL}" if method == "cohort-best" else method


def _save(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _psnr_per_image(rows: Sequence[dict], methods: Sequence[str], images: Sequence[str]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.4 * len(images) * max(1, len(methods)) + 2), 4.2))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        xs, means, lo, hi = [], [], [], []
        for i, image in enumerate(images):
            values = [r["psnr"] for r in rows if r["method"] == m and r["image"] == image]
            if values:
                mean = sum(values) / len(values)
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                means.append(mean)
                lo.append(mean - min(values))
                hi.append(max(values) - mean)
        if xs:
            style = (dict(color="white", edgecolor="dimgray", hatch="///", linewidth=0.8) if m in REFERENCES
                     else {})
            ax.bar(xs, means, width, yerr=[lo, hi], capsize=2, label=_legend(m), **style)
    values = [r["psnr"] for r in rows]
    if values:
        ax.set_ylim(max(0.0, min(values) - 2), max(values) + 1)
    ax.set_xticks(range(len(images)), images, rotation=30 if len(images) > 4 else 0, ha="right")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("PSNR per image (mean over seeds; bars: lowest to highest seed)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _curves(folder: Path, rows: Sequence[dict], image: str) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for r in rows:
        if r["method"] in REFERENCES and not r.get("psnr_y_channel"):
            ax.axhline(r["psnr"], ls="--", lw=1.2, color="dimgray", label=_legend(r["method"]))
        if not r.get("curve"):
            continue
        data = json.loads((folder / r["curve"]).read_text())
        steps = range(1, len(data["psnr"]) + 1)
        line = ax.plot(steps, data["psnr"], lw=1.4, label=_legend(r["method"]))[0]
        if data.get("psnr_raw"):
            ax.plot(steps, data["psnr_raw"], lw=0.7, alpha=0.45, color=line.get_color())
        if data.get("stopped_at") and data.get("psnr_at_stop") is not None:
            ax.plot([data["stopped_at"]], [data["psnr_at_stop"]], "o", color=line.get_color(), ms=6)
    ax.set_xlabel("DIP step")
    ax.set_ylabel("PSNR (dB, all channels)")
    ax.set_title(f"{image}, seed {rows[0]['seed']}: smoothed output (thick), raw output (thin), "
                 "early stop (dot: the stable window's mean)", fontsize="small")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _grid(folder: Path, rows: Sequence[dict], image: str) -> Any:
    from matplotlib.figure import Figure

    r0 = rows[0]
    panels = [("clean", r0["ground_truth"]), (f"corrupted (seed {r0['seed']})", r0["input"])]
    panels += [(f"{_legend(r['method'])}\n{r['psnr']:.2f} dB", r["restored"]) for r in rows]
    fig = Figure(figsize=(2.6 * len(panels), 3.0))
    for k, (title, rel) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        x = load_image(folder / rel)[0]
        img = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
        ax.imshow(img.numpy(), cmap="gray" if x.shape[0] == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize="small")
        ax.set_axis_off()
    return fig


def draw(folder: Path, rows: Sequence[dict], context: Any, log: Callable[[str], None]) -> dict[str, Path]:
    """Draw every plot of ``rows`` into ``folder/plots``; returns name -> path (empty without matplotlib)."""
    if not available():
        log('plots skipped: matplotlib is not installed (pip install "isnas-fast[plot]")')
        return {}
    if not rows:
        return {}
    out = make_folder(folder / "plots", "plots folder")
    methods = [m for m in context.methods if m in METHOD_LABELS]
    written = {"psnr_per_image.png": _save(_psnr_per_image(rows, methods, context.images),
                                           out / "psnr_per_image.png")}
    first_seed = context.seeds[0]
    for image in context.images:
        mine = sorted((r for r in rows if r["image"] == image and r["seed"] == first_seed),
                      key=lambda r: methods.index(r["method"]))
        if not mine:
            continue
        if any(r.get("curve") for r in mine):  # references alone have no steps to plot
            written[f"curves-{image}.png"] = _save(_curves(folder, mine, image), out / f"curves-{image}.png")
        written[f"grid-{image}.png"] = _save(_grid(folder, mine, image), out / f"grid-{image}.png")
    return written
