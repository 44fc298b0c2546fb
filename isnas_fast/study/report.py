"""A study's outputs: ``study.json`` (settings and analysis), ``study.md`` (tables)
and, with matplotlib (the ``plot`` extra), ``metric_vs_psnr.png`` and ``psnr_histogram.png``."""
from __future__ import annotations

from typing import Any

from ..io import atomic_path, atomic_write_text
from ..io.files import json_text
from .analysis import GAP_NEVER, GAP_WITHIN, TOP_KS

__all__ = ["write_outputs", "markdown"]


def _f(x: Any, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def markdown(result: Any) -> str:
    """The study's tables as Markdown."""
    a, s = result.analysis, result.settings
    lines = [f"# Study: {s['task']} {s['params']}, {a['n']} genotypes ({s['models']}), width {s['width']}, "
             f"{s['iterations']} steps, seed {s['seed']}", ""]
    lines += ["## Metric at initialisation vs PSNR (lower metric should mean higher PSNR: negative tau)", "",
              "PSNR: the best the smoothed output reached; after the last step; returned by early stopping "
              f"({a['stopping_detector']}). Top-K: does the metric's top K hold one of the 10 % best (best PSNR).", "",
              "| metric | tau (best) | p | rho (best) | p | tau (final) | p | tau (returned) | p | "
              + " | ".join(f"top-{k}" for k in TOP_KS) + " |",
              "|---|---|---|---|---|---|---|---|---|" + "---|" * len(TOP_KS)]
    for m, e in a["metrics"].items():
        b, f, r = e["best_psnr"], e["final_psnr"], e.get("returned_psnr", {})
        lines.append(f"| {m} | {_f(b['kendall_tau'], '+.3f')} | {_f(b['kendall_p'], '.3g')} | "
                     f"{_f(b['spearman_rho'], '+.3f')} | {_f(b['spearman_p'], '.3g')} | "
                     f"{_f(f['kendall_tau'], '+.3f')} | {_f(f['kendall_p'], '.3g')} | "
                     f"{_f(r.get('kendall_tau'), '+.3f')} | {_f(r.get('kendall_p'), '.3g')} | "
                     + " | ".join("yes" if b[f"top{k}"] else "no" for k in TOP_KS) + " |")
    lines += ["", "## The search's pick among these genotypes (its cohort stage, per metric)", "",
              "| metric | pick | best PSNR | percentile | below the best | minus the median | returned by early stopping |",
              "|---|---|---|---|---|---|---|"]
    for m, p in a["picks"].items():
        b, es = p["best"], p["early_stopped"]
        lines.append(f"| {m} | `{p['genotype']}` | {b['psnr']:.2f} | {b['percentile']:.0f} % | "
                     f"{b['gap_to_best']:.2f} | {-b['gap_to_median']:+.2f} | {_f(es and es['psnr'])} |")
    if "nasdip" in a:
        b, es = a["nasdip"]["best"], a["nasdip"]["early_stopped"]
        lines += ["", f"NAS-DIP genotype `{a['nasdip']['genotype']}` at the same budget: best PSNR {b['psnr']:.2f} dB "
                  f"({b['percentile']:.0f} % of the genotypes below it), returned by early stopping "
                  f"{_f(es and es['psnr'])} dB. Best of all: {b['best']:.2f} dB, median {b['median']:.2f} dB."]
    lines += ["", f"## Early stopping: returned PSNR vs the best the run passed through (stopping detector: "
              f"{a['stopping_detector']})", "",
              f"| detector | runs | within {GAP_WITHIN} dB | worst gap | gaps > {GAP_NEVER} dB | mean gap (95 % CI) |",
              "|---|---|---|---|---|---|"]
    for name, e in a["early_stopping"].items():
        if not e.get("runs"):
            continue
        lines.append(f"| {name} | {e['runs']} | {100 * e['within']:.0f} % | {e['worst_gap']:.2f} | "
                     f"{e['beyond_never']} | {e['mean_gap']:.2f} ± {_f(e['mean_gap_ci95'])} |")
    lines += ["", "## Genotypes by best PSNR", "",
              "| genotype | " + " | ".join(a["metrics"]) + " | best PSNR (iter) | final PSNR |",
              "|---|" + "---|" * (len(a["metrics"]) + 2)]
    cands = sorted((r for r in result.rows if r.get("kind") == "genotype" and r["role"] == "candidate"),
                   key=lambda r: -r["best_psnr"])
    for r in cands:
        lines.append(f"| `{r['genotype']}` | " + " | ".join(f"{r['metrics_mean'][m]:.4g}" for m in a["metrics"])
                     + f" | {r['best_psnr']:.2f} ({r['best_iteration']}) | {r['final_psnr']:.2f} |")
    return "\n".join(lines) + "\n"


def _plots(result: Any) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    a = result.analysis
    cands = [r for r in result.rows if r.get("kind") == "genotype" and r["role"] == "candidate"]
    best = [r["best_psnr"] for r in cands]
    names = list(a["metrics"])
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6), squeeze=False)
    for ax, m in zip(axes[0], names):
        ax.scatter([r["metrics_mean"][m] for r in cands], best, s=14)
        tau = a["metrics"][m]["best_psnr"]["kendall_tau"]
        ax.set_title(f"{m}\nKendall tau {tau:+.2f}" if tau == tau else m, fontsize=9)
        ax.set_xlabel("metric at initialisation")
        ax.set_ylabel("best PSNR (dB)")
    fig.tight_layout()
    written = []
    with atomic_path(result.out / "metric_vs_psnr.png", "plot") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    written.append("metric_vs_psnr.png")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(best, bins=min(30, max(5, len(best) // 2)), color="0.7")
    for m, p in a["picks"].items():
        ax.axvline(p["best"]["psnr"], color="C0", label=f"search pick ({m})")
        break
    if "nasdip" in a:
        ax.axvline(a["nasdip"]["best"]["psnr"], color="C3", linestyle="--", label="NAS-DIP genotype")
    ax.set_xlabel("best PSNR (dB)")
    ax.set_ylabel("genotypes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(result.out / "psnr_histogram.png", "plot") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    written.append("psnr_histogram.png")
    return written


def write_outputs(result: Any) -> None:
    """``study.json``, ``study.md`` and the plots (atomically)."""
    data = {"settings": result.settings, "analysis": result.analysis,
            "picks": {m: {k: v for k, v in p.items() if k != "kind"} for m, p in result.picks.items()}}
    data["plots"] = _plots(result)
    atomic_write_text(result.out / "study.json", json_text(data) + "\n")
    atomic_write_text(result.out / "study.md", markdown(result))
