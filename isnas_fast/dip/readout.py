"""The clipped-noise readout: a denoised estimate of ``E[y]`` mapped back to the image (docs/design.md §6).

A denoising run fits ``y = clip(x + n, 0, 1)``, ``n ~ N(0, sigma^2)``, so its
estimate ``m`` approaches ``E[y] = f(x)``, not ``x``: the clip pulls it
inwards, by ``sigma / sqrt(2 pi)`` at ``x = 0`` and ``x = 1``.  On an image
with large black or white regions that bias alone caps PSNR (at sigma 25 a
binary silhouette whose output were exactly ``E[y]`` would score about 28 dB).

Inverting ``f`` removes the bias but multiplies the estimate's own error by
``1 / f'(x)``, up to 2 at the ends, which costs more than it gains where the
bias is small.  The readout takes the part of the step from ``m`` to
``f^-1(m)`` that minimises the expected squared error for an estimate whose
own error has variance ``e^2`` (:data:`ERROR_SHARE` times ``sigma^2``)::

    x~ = f^-1(m),   B = m - x~,   k = 1 / f'(x~) - 1
    x^ = m + lam (x~ - m),   lam = clamp((B^2 - e^2 k) / (B^2 + e^2 k^2), 0, 1)

(``(1 - lam) B + err ((1 - lam) + lam / f')`` is the error of ``x^``.)  Far
from 0 and 1, ``B = k = 0`` and ``x^ = m``.  The map depends on ``m`` and
``sigma`` alone, so it is tabulated once per noise level on
:data:`POINTS` values of ``m`` in [0, 1] and applied by linear
interpolation (:func:`apply_readout`: clamp, floor, gather; exportable to
ONNX), which the served network applies to its output.

:func:`readout_reference` is the plain float64 computation (bisection for
``f^-1``) the table is built from and tested against.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .early_stopping import clipped_observation_moments

__all__ = ["ERROR_SHARE", "POINTS", "MAX_POINTS", "readout_reference", "clipped_noise_readout", "apply_readout",
           "check_readout"]

#: ``e^2 / sigma^2``: the variance of a stopped run's own error that the readout assumes, as a share
#: of the noise's (chosen on the tuning crops, bench/README.md "The clipped-noise readout").
ERROR_SHARE = 1.0 / 64.0
#: Values of ``m`` the readout is tabulated on (spacing 1/4096).
POINTS = 4097
#: Most points a readout table may have (a bundle's is checked against it).
MAX_POINTS = 65537


def _slope(x: Tensor, sigma: float) -> Tensor:
    """``f'(x) = Phi((1 - x) / sigma) - Phi(-x / sigma)``, the slope of ``x -> E[y]`` (float64)."""
    cdf = lambda z: 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))  # noqa: E731
    return cdf((1.0 - x) / sigma) - cdf(-x / sigma)


def _inverse_mean(m: Tensor, sigma: float, steps: int = 60) -> Tensor:
    """``x`` in [0, 1] with ``E[y](x) = m`` by bisection (``f`` increases); the ends beyond ``f(0)``, ``f(1)``."""
    lo, hi = torch.zeros_like(m), torch.ones_like(m)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        below = clipped_observation_moments(mid, sigma)[0] < m
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def readout_reference(m: Tensor, sigma: float, error_share: float = ERROR_SHARE) -> Tensor:
    """The readout of estimates ``m`` (any shape, values in [0, 1]) at noise level ``sigma`` (in
    [0, 1] units), computed directly in float64 (see the module docstring)."""
    if not sigma > 0:
        raise ValueError(f"the readout needs a noise level > 0, got {sigma!r}")
    m = m.to(torch.float64).clamp(0.0, 1.0)
    x = _inverse_mean(m, sigma)
    bias = m - x
    k = 1.0 / _slope(x, sigma).clamp_min(1e-12) - 1.0
    e2 = error_share * sigma * sigma
    lam = ((bias * bias - e2 * k) / (bias * bias + e2 * k * k).clamp_min(1e-300)).clamp(0.0, 1.0)
    return (m + lam * (x - m)).clamp(0.0, 1.0)


def clipped_noise_readout(sigma: float, points: int = POINTS, error_share: float = ERROR_SHARE) -> Tensor:
    """The readout at noise level ``sigma`` (in [0, 1] units) tabulated on ``points`` equally spaced
    estimates in [0, 1]: (points,) float32 in [0, 1]."""
    grid = torch.linspace(0.0, 1.0, points, dtype=torch.float64)
    return readout_reference(grid, sigma, error_share).float().contiguous()


def apply_readout(x: Tensor, table: Tensor) -> Tensor:
    """``table`` (n,) read at ``x`` (any shape; clamped to [0, 1]) by linear interpolation between
    its points ``i / (n - 1)``; same shape and dtype as ``x``."""
    n = table.shape[0]
    pos = x.clamp(0.0, 1.0) * (n - 1)
    lo = pos.floor().clamp(max=n - 2)
    frac = pos - lo
    i = lo.long()
    a, b = table[i], table[i + 1]
    return (a + frac * (b - a)).to(x.dtype)


def check_readout(table: object) -> str | None:
    """Why ``table`` is not a readout table (a (n,) float32 tensor, 2 <= n <= MAX_POINTS, finite,
    in [0, 1]), or None when it is one."""
    if not isinstance(table, Tensor) or table.ndim != 1 or table.dtype != torch.float32:
        return "the readout must be a one-dimensional float32 tensor"
    if not 2 <= table.shape[0] <= MAX_POINTS:
        return f"the readout has {table.shape[0]} points; from 2 to {MAX_POINTS} are allowed"
    if not bool(torch.isfinite(table).all()) or float(table.min()) < 0.0 or float(table.max()) > 1.0:
        return "the readout holds values outside [0, 1]"
    return None
