"""What a study measures (the paper's NAS-dataset evidence), from its per-genotype rows.

Everything here is a pure function of the rows a study writes, so the numbers
can be recomputed independently from ``rows.jsonl``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from ..stats import kendall_tau, mean_ci, spearman_rho

__all__ = ["correlations", "top_k_hits", "placement", "early_stopping_summary", "TOP_FRACTION", "TOP_KS",
           "GAP_WITHIN", "GAP_NEVER"]

#: A genotype is a "top" model when it is among the best 10 % by PSNR.
TOP_FRACTION = 0.10
TOP_KS = (1, 5, 15)
#: Early stopping: the returned PSNR should be within GAP_WITHIN dB of the
#: best the run passed through, and never more than GAP_NEVER dB below.
GAP_WITHIN = 0.5
GAP_NEVER = 1.5


def correlations(metric_values: Sequence[float], psnrs: Sequence[float]) -> dict:
    """Kendall tau-b and Spearman rho (two-sided p-values) of a metric against PSNR.

    Lower metric values are meant to predict higher PSNR, so a useful metric
    has negative coefficients.
    """
    tau, p_tau = kendall_tau(list(metric_values), list(psnrs))
    rho, p_rho = spearman_rho(list(metric_values), list(psnrs))
    return {"kendall_tau": tau, "kendall_p": p_tau, "spearman_rho": rho, "spearman_p": p_rho}


def top_k_hits(metric_values: Sequence[float], psnrs: Sequence[float], ks: Sequence[int] = TOP_KS) -> dict:
    """For each K: does the metric's top K (lowest values) hold one of the best ``TOP_FRACTION`` by PSNR?

    The top set has ``max(1, ceil(TOP_FRACTION * n))`` genotypes (ties at its
    edge included); K larger than n is capped at n.
    """
    n = len(psnrs)
    n_top = max(1, math.ceil(TOP_FRACTION * n))
    threshold = sorted(psnrs, reverse=True)[n_top - 1]
    top = {i for i, p in enumerate(psnrs) if p >= threshold}
    order = sorted(range(n), key=lambda i: (metric_values[i], i))
    return {"top_set_size": len(top), **{f"top{k}": bool(set(order[: min(k, n)]) & top) for k in ks}}


def placement(value: float, population: Sequence[float]) -> dict:
    """Where ``value`` lands among ``population`` (PSNRs): percentile (the share
    below it, ties counted half, in %), gap to the best and to the median (dB)."""
    pop = sorted(population)
    n = len(pop)
    below = sum(p < value for p in pop)
    ties = sum(p == value for p in pop)
    median = pop[n // 2] if n % 2 else 0.5 * (pop[n // 2 - 1] + pop[n // 2])
    return {"psnr": value, "percentile": 100.0 * (below + 0.5 * ties) / n, "gap_to_best": pop[-1] - value,
            "gap_to_median": median - value, "best": pop[-1], "median": median}


def early_stopping_summary(returned: Sequence[Optional[float]], best: Sequence[float]) -> dict:
    """The returned-vs-best gap (dB) of a detector over runs: share within
    ``GAP_WITHIN``, worst gap, mean gap with its 95 % interval, runs that returned nothing."""
    gaps = [b - r for r, b in zip(returned, best) if r is not None]
    if not gaps:
        return {"runs": 0, "missing": len(best)}
    mean, half = mean_ci(gaps)
    return {
        "runs": len(gaps),
        "missing": len(best) - len(gaps),
        "within": sum(g <= GAP_WITHIN for g in gaps) / len(gaps),
        "worst_gap": max(gaps),
        "beyond_never": sum(g > GAP_NEVER for g in gaps),
        "mean_gap": mean,
        "mean_gap_ci95": half,
    }
