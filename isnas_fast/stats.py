"""Small statistics for studies and suites, in plain Python (no SciPy at run time).

* :func:`t_quantile` / :func:`mean_ci`: Student-t confidence intervals of a mean.
* :func:`kendall_tau`: Kendall's tau-b with its two-sided p-value (exact
  permutation distribution for small samples without ties, the normal
  approximation with tie corrections otherwise -- as SciPy's ``method="auto"``).
* :func:`spearman_rho`: Spearman's rank correlation with the t-approximation p-value.
* :func:`paired_comparison`: mean paired difference, its interval, wins / ties / losses.

The tests compare every function with SciPy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["t_cdf", "t_quantile", "mean_ci", "ranks", "kendall_tau", "spearman_rho", "paired_comparison",
           "PairedComparison"]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(ln)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """``(mean, half_width)`` of the Student-t ``level`` confidence interval of the mean.

    One value gives a half width of NaN (no spread to estimate); none gives (NaN, NaN).
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(xs) / n
    if n == 1:
        return mean, float("nan")
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    return mean, t_quantile(0.5 + level / 2.0, n - 1) * math.sqrt(var / n)


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return out


def _kendall_exact_p(n: int, discordant: int) -> float:
    """Two-sided exact p-value of Kendall's tau without ties (Mahonian numbers)."""
    total_pairs = n * (n - 1) // 2
    c = min(discordant, total_pairs - discordant)
    counts = [1]  # permutations of k items by their number of inversions
    for k in range(2, n + 1):
        new = [0] * (len(counts) + k - 1)
        window = 0
        for j in range(len(new)):
            window += counts[j] if j < len(counts) else 0
            if j - k >= 0:
                window -= counts[j - k]
            new[j] = window
        counts = new
    p = 2.0 * sum(counts[: c + 1]) / math.factorial(n)
    return min(1.0, p)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Kendall's tau-b of ``x`` and ``y`` and its two-sided p-value.

    The p-value is exact (the permutation distribution) when there are no
    ties and n <= 50, else from the normal approximation with the tie
    corrections of the variance (as ``scipy.stats.kendalltau``).  NaN when
    either side is constant or n < 2.
    """
    n = len(x)
    if n != len(y):
        raise ValueError("x and y must have the same length")
    if n < 2:
        return float("nan"), float("nan")
    conc = disc = tie_x = tie_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tie_x += 1
            elif dy == 0:
                tie_y += 1
            elif (dx > 0) == (dy > 0):
                conc += 1
            else:
                disc += 1
    n0 = n * (n - 1) / 2

    def tie_groups(v: Sequence[float]) -> list[int]:
        counts: dict[float, int] = {}
        for a in v:
            counts[a] = counts.get(a, 0) + 1
        return [t for t in counts.values() if t > 1]

    gx, gy = tie_groups(x), tie_groups(y)
    n1 = sum(t * (t - 1) / 2 for t in gx)
    n2 = sum(t * (t - 1) / 2 for t in gy)
    denom = math.sqrt((n0 - n1) * (n0 - n2))
    if denom == 0:
        return float("nan"), float("nan")
    tau = (conc - disc) / denom
    if not gx and not gy and n <= 50:
        return tau, _kendall_exact_p(n, disc)
    v0 = n * (n - 1) * (2 * n + 5)
    vt = sum(t * (t - 1) * (2 * t + 5) for t in gx)
    vu = sum(t * (t - 1) * (2 * t + 5) for t in gy)
    v1 = sum(t * (t - 1) for t in gx) * sum(t * (t - 1) for t in gy) / (2 * n * (n - 1))
    v2 = (sum(t * (t - 1) * (t - 2) for t in gx) * sum(t * (t - 1) * (t - 2) for t in gy)
          / (9 * n * (n - 1) * (n - 2))) if n > 2 else 0.0
    var = (v0 - vt - vu) / 18 + v1 + v2
    z = (conc - disc) / math.sqrt(var)
    return tau, math.erfc(abs(z) / math.sqrt(2))


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rho (Pearson correlation of the average ranks) and its two-sided
    p-value from the t-distribution with n - 2 degrees of freedom (as
    ``scipy.stats.spearmanr``).  NaN when either side is constant or n < 3."""
    n = len(x)
    if n != len(y):
        raise ValueError("x and y must have the same length")
    if n < 3:
        return float("nan"), float("nan")
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return float("nan"), float("nan")
    rho = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    if abs(rho) == 1.0:
        return rho, 0.0
    t = rho * math.sqrt((n - 2) / (1.0 - rho * rho))
    return rho, 2.0 * (1.0 - t_cdf(abs(t), n - 2))


@dataclass(frozen=True)
class PairedComparison:
    """``a - b`` over pairs: mean difference, the half width of its ``level``
    t-interval, and how often ``a`` was above / within ``tie`` of / below ``b``."""

    mean: float
    half_width: float
    wins: int
    ties: int
    losses: int
    n: int
    level: float = 0.95


def paired_comparison(a: Sequence[float], b: Sequence[float], *, tie: float = 0.0,
                      level: float = 0.95) -> PairedComparison:
    """Compare paired values ``a[i]`` vs ``b[i]`` (e.g. PSNR of two methods on the same image and seed)."""
    if len(a) != len(b):
        raise ValueError("a and b must have the same length")
    diffs = [float(p) - float(q) for p, q in zip(a, b)]
    mean, half = mean_ci(diffs, level)
    wins = sum(d > tie for d in diffs)
    losses = sum(d < -tie for d in diffs)
    return PairedComparison(mean, half, wins, len(diffs) - wins - losses, losses, len(diffs), level)
