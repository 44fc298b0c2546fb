"""Noise-level estimation from the noisy image alone (denoising with an unknown sigma).

Two estimators of the standard deviation of additive white Gaussian noise,
both in 0..255 units like :class:`~isnas_fast.tasks.Denoise`'s ``sigma``:

* ``pca`` (the default) -- Chen, Zhu and Heng, "An efficient statistical
  method for image noise level estimation" (ICCV 2015).  The covariance of
  the image's overlapping p x p patches (all channels together) has the
  noise variance as the eigenvalue of every direction the clean patches do
  not span; the method takes the largest set of smallest eigenvalues whose
  mean is also their median (as many eigenvalues above the mean as below
  it) and returns the square root of that mean.  Two refinements make it
  hold on small, textured or clipped images (64 px crops of photographs):

  - weak-texture patches only, in the spirit of Liu, Tanaka and Okutomi
    ("Single-image noise level estimation for blind denoising", IEEE TIP
    2013): a patch of noise alone has a mean squared difference between
    neighbouring pixels of 2 sigma^2; patches with more than
    ``texture_ratio`` times that (edges, texture) are left out;
  - clipping: an 8- or 16-bit image's noise is clipped to [0, 1], which
    shrinks it near black and white; each patch's share of the noise
    variance that clipping leaves is computed from its channel means (as
    for a flat patch, :func:`~isnas_fast.dip.early_stopping.clipped_observation_moments`,
    corrected for the noise of a mean over a few dozen values, which
    otherwise reads the share too high near 0 and 1),
    both the texture test and the estimate use it: each channel of the kept
    patches is divided by the square root of its mean share before the PCA
    (a colour image's channels sit at different levels, so clipping leaves
    them unequal noise, and the equal-counts rule would otherwise read the
    weakest channel);
  - the noise bulk: the noise eigenvalues of a sample covariance spread
    around sigma^2 (Marchenko-Pastur), skewed to the right, so the authors'
    equal-counts rule stops inside the spread and reads sigma low; the set
    is widened to the spread's upper edge.

  They depend on sigma, so the estimate is repeated with the new sigma
  until it settles.

  Patches hold about 64 values, as the authors' 8 x 8 grey patches do: 8 x 8
  for one channel, 5 x 5 x 3 for colour.  The eigenvalues' spread grows with
  the patch's size against the number of patches (Marchenko-Pastur); by the
  equal-counts rule alone 8 x 8 x 3 patches (192 values) of a 64 px colour
  crop read sigma several per cent low, which chose the smaller colour
  patch; widened to the bulk's edge both sizes read noise alone within
  about 1 % (bench/README.md, "The noise level, estimated from the noisy image").
* ``mad`` -- Donoho and Johnstone's wavelet estimator: the median absolute
  value of the finest diagonal Daubechies-2 detail coefficients over 0.6745
  (what scikit-image's ``estimate_sigma`` computes).  Simple and fast, but
  texture pushes it up and clipping pulls it down.

Images are ``(1, C, H, W)`` float tensors in [0, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from .dip.early_stopping import clipped_observation_moments
from .errors import InputError

__all__ = ["NoiseEstimate", "estimate_noise", "pca_sigma", "default_patch", "mad_sigma", "NOISE_METHODS"]

NOISE_METHODS = ("pca", "mad")

#: Daubechies-2 decomposition filters (PyWavelets' ``db2`` dec_lo / dec_hi).
_DB2_LO = np.array([-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025])
_DB2_HI = np.array([-0.48296291314469025, 0.836516303737469, -0.22414386804185735, -0.12940952255092145])


@dataclass(frozen=True)
class NoiseEstimate:
    """An estimated noise level.

    ``sigma``: standard deviation in 0..255 units.  ``method``: ``"pca"`` or
    ``"mad"``.  ``patches``: patches (pca) or coefficients (mad) the estimate
    rests on.  ``detail``: a one-line description for reports.
    """

    sigma: float
    method: str
    patches: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form for reports."""
        return {"sigma": round(self.sigma, 4), "method": self.method, "samples": self.patches,
                "detail": self.detail}


def _as_array(image: Any) -> np.ndarray:
    """(C, H, W) float64 in [0, 1] from a (1, C, H, W) / (C, H, W) tensor or an array."""
    if isinstance(image, Tensor):
        x = image.detach().to("cpu", torch.float64).numpy()
    else:
        x = np.asarray(image, dtype=np.float64)
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise InputError(f"noise estimation takes one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise InputError(f"noise estimation needs a (1, C, H, W) image, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("noise estimation: the image contains NaN or infinite values")
    return x


def _patches(x: np.ndarray, p: int, max_patches: int) -> tuple[np.ndarray, np.ndarray]:
    """All p x p patches of (C, H, W) ``x`` on a regular grid (stride grows until at most
    ``max_patches``), as (N, C*p*p) rows, and each patch's mean."""
    c, h, w = x.shape
    side = p + math.isqrt(c * p * p - 1)  # as many patches as a patch has values: a covariance of full rank
    if h < side or w < side:
        raise InputError(f"noise estimation needs an image of at least {side}x{side} px, got {w}x{h}")
    stride = 1
    while ((h - p) // stride + 1) * ((w - p) // stride + 1) > max_patches:
        stride += 1
    view = np.lib.stride_tricks.sliding_window_view(x, (p, p), axis=(1, 2))[:, ::stride, ::stride]
    rows = view.transpose(1, 2, 0, 3, 4).reshape(-1, c * p * p)
    return rows, rows.mean(axis=1)


def _chen_variance(rows: np.ndarray, widen: bool = False) -> float:
    """Chen-Zhu-Heng's noise variance from patch rows (N, r): the mean of the largest
    set of smallest covariance eigenvalues that has as many values above its mean as below.

    ``widen``: the noise eigenvalues of a sample covariance spread over a
    Marchenko-Pastur bulk ``[v (1 - g)^2, v (1 + g)^2]`` around the noise
    variance ``v`` (``g``: the square root of values per patch over the
    effective number of patches), a bulk skewed to the right, so the
    equal-counts rule stops inside it and reads ``v`` low (0.3-3 % of sigma
    on white noise at 64-128 px).  With ``widen`` the set grows to every
    eigenvalue up to the bulk's upper edge, ``g`` read off the smallest
    eigenvalue as the lower edge, until the mean settles.
    """
    centred = rows - rows.mean(axis=0, keepdims=True)
    cov = centred.T @ centred / rows.shape[0]
    eig = np.sort(np.linalg.eigvalsh(cov))
    count = 1
    for count in range(eig.size, 0, -1):
        part = eig[:count]
        mean = part.mean()
        if (part > mean).sum() == (part < mean).sum():
            break
    variance = float(eig[:count].mean())
    if widen:
        for _ in range(5):
            if variance <= 0:
                break
            g = 1.0 - math.sqrt(max(float(eig[0]), 0.0) / variance)
            wider = float(eig[:max(count, int((eig <= variance * (1.0 + g) ** 2).sum()))].mean())
            if wider == variance:
                break
            variance = wider
    return max(variance, 0.0)


def _clipped_share_table(sigma: float, pixels: int, grid: int = 2049, passes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The share of the noise variance clipping leaves, Var(clip(x + n, 0, 1)) / sigma^2, against
    the clipped mean E[clip(x + n, 0, 1)] over x in [0, 1] (n ~ N(0, sigma^2)), corrected for
    reading it at a patch's own mean of ``pixels`` noisy values rather than at E[...]
    (``pixels`` 0: not corrected).

    Near 0 and 1 the share rises steeply with the mean and the table ends at x = 0 and 1, so the
    share read at a noisy mean is too high on average (by about 7 % of the share for a mean of
    64 values on black, 10 % for 25).  The table ``g`` is deconvolved so that reading it at the
    noisy mean gives the share on average: ``passes`` Van Cittert steps
    ``g <- g + share - E[g(mean + e)]``, ``e`` normal with the clipped variance over ``pixels``
    (40-point Gauss-Hermite).  Three passes leave at most about 1.3 % (Monte Carlo over flat
    patches of 25 and 64 values at sigma 10-50, from 0 to 0.05 and at 1).
    Returns (means, shares), means increasing.
    """
    xs = torch.linspace(0.0, 1.0, grid, dtype=torch.float64)
    mean, var = (t.numpy() for t in clipped_observation_moments(xs, sigma))
    share = var / sigma ** 2
    if pixels <= 0:
        return mean, share
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    noisy = np.clip(mean[:, None] + np.sqrt(var[:, None] / int(pixels)) * nodes[None], mean[0], mean[-1])
    table = share.copy()
    for _ in range(passes):
        table = table + share - (np.interp(noisy, mean, table) * weights).sum(axis=1)
    return mean, np.clip(table, 1e-3, None)


def _clipped_channel_share(channel_means: np.ndarray, sigma: float, pixels: int = 0) -> np.ndarray:
    """Var(clip(x + n, 0, 1)) / sigma^2 for each channel of flat patches whose clipped channel
    means are ``channel_means`` (N, C) (n ~ N(0, sigma^2)): the share of the noise variance
    clipping leaves, (N, C).  ``pixels``: the values per channel each mean is taken over (a
    p x p patch: p^2), to correct for the means' own noise (:func:`_clipped_share_table`);
    0: read at the means as they are."""
    if sigma <= 0:
        return np.ones_like(channel_means)
    mean, share = _clipped_share_table(sigma, pixels)
    return np.interp(np.clip(channel_means, mean[0], mean[-1]), mean, share)


def _difference_energy(rows: np.ndarray, channels: int, p: int) -> np.ndarray:
    """A quarter of the summed mean squared differences of horizontally and vertically adjacent pixels of
    each patch row (N, C*p*p): sigma^2 for a flat patch of white noise of variance sigma^2."""
    r = rows.reshape(rows.shape[0], channels, p, p)
    dx = np.diff(r, axis=3)
    dy = np.diff(r, axis=2)
    return 0.25 * ((dx * dx).mean(axis=(1, 2, 3)) + (dy * dy).mean(axis=(1, 2, 3)))


def default_patch(channels: int) -> int:
    """The PCA estimator's patch side (px) for ``channels``: about 64 values a patch."""
    return max(3, round(8 / math.sqrt(max(1, int(channels)))))


def pca_sigma(image: Any, *, patch: Optional[int] = None, max_patches: int = 20000, texture_ratio: float = 2.0,
              min_patches: int = 200, max_iterations: int = 10) -> NoiseEstimate:
    """Chen-Zhu-Heng PCA noise estimate (0..255 units) on weak-texture patches, corrected for clipping.

    ``image``: (1, C, H, W) in [0, 1].  ``patch``: side of the square patches
    (px); None: :func:`default_patch` (8 for one channel, 5 for three).  ``max_patches``: patches are taken on the finest grid that gives
    at most this many.  ``texture_ratio``: patches whose neighbour-difference
    energy exceeds this many times that of clipped noise alone are left out
    (when fewer than ``max(min_patches, 4 * C * patch**2)`` remain, that many
    of the weakest are used).  Repeated with the new sigma until it settles,
    at most ``max_iterations`` times (0: Chen-Zhu-Heng on every patch as the
    authors wrote it, clipping and the eigenvalues' spread ignored).
    """
    x = _as_array(image)
    patch = default_patch(x.shape[0]) if patch is None else int(patch)
    rows, means = _patches(x, patch, int(max_patches))
    c = x.shape[0]
    channel_means = rows.reshape(rows.shape[0], c, -1).mean(axis=2)
    energy = _difference_energy(rows, c, int(patch))
    minimum = max(int(min_patches), 4 * rows.shape[1])
    sigma = math.sqrt(_chen_variance(rows))
    used = rows.shape[0]
    pixels = int(patch) ** 2
    for _ in range(max_iterations):
        channel_share = _clipped_channel_share(channel_means, sigma, pixels)
        shrink = channel_share.mean(axis=1)
        # weak texture: a patch of noise alone has difference energy shrink * sigma^2
        ratio = energy / np.maximum(shrink * sigma ** 2, 1e-12)
        keep = ratio <= texture_ratio
        if int(keep.sum()) < minimum:
            keep = np.zeros_like(keep)
            keep[np.argsort(ratio, kind="stable")[:min(minimum, ratio.size)]] = True
        # each channel's values scaled by its kept patches' mean share: clipped colour noise is
        # weaker in a channel near black or white, and unequal channel variances would otherwise
        # put the equal-counts rule on the weakest channel's eigenvalues
        scale = 1.0 / np.sqrt(np.maximum(channel_share[keep].mean(axis=0), 0.05))
        kept = rows[keep].reshape(-1, c, pixels) * scale[:, None]
        used = kept.shape[0]
        new = math.sqrt(_chen_variance(kept.reshape(used, -1), widen=True))
        settled = abs(new - sigma) <= 1e-3 * max(sigma, 1e-6)
        sigma = new
        if settled:
            break
    detail = (f"PCA of {used} {patch}x{patch} patches (Chen, Zhu and Heng, ICCV 2015), "
              f"weak-texture patches, corrected for each channel's clipping and for the eigenvalues' spread")
    return NoiseEstimate(sigma * 255.0, "pca", used, detail)


def _db2_level1_hh(plane: np.ndarray) -> np.ndarray:
    """The finest diagonal (HH) db2 detail coefficients of a 2-D array, symmetric extension
    (PyWavelets' ``dwt2(..., 'db2')['dd']`` layout)."""
    def along(a: np.ndarray, axis: int) -> np.ndarray:
        n = a.shape[axis]
        k = _DB2_HI.size
        pad = [(0, 0)] * a.ndim
        pad[axis] = (k - 1, k - 1)
        ext = np.pad(a, pad, mode="symmetric")
        # full convolution then keep the odd samples, as PyWavelets' downsampling does
        win = np.lib.stride_tricks.sliding_window_view(ext, k, axis=axis)
        full = (win * _DB2_HI[::-1]).sum(axis=-1)
        out_len = (n + k - 1) // 2
        idx = np.arange(1, 2 * out_len, 2)
        return np.take(full, idx, axis=axis)

    return along(along(plane, 0), 1)


def mad_sigma(image: Any) -> NoiseEstimate:
    """Donoho-Johnstone wavelet estimate (0..255 units): median |HH db2 coefficients| / 0.6745,
    averaged over channels."""
    x = _as_array(image)
    denom = 0.6744897501960817  # the standard normal's 0.75 quantile
    details = [_db2_level1_hh(plane) for plane in x]
    sigmas = [float(np.median(np.abs(d))) / denom for d in details]
    n = sum(d.size for d in details)
    return NoiseEstimate(float(np.mean(sigmas)) * 255.0, "mad", n,
                         "median absolute finest-scale db2 wavelet coefficient / 0.6745 (Donoho and Johnstone)")


def estimate_noise(image: Any, method: str = "pca") -> NoiseEstimate:
    """Estimate the noise level of a noisy image (1, C, H, W) in [0, 1]; sigma in 0..255 units.

    ``method``: ``"pca"`` (Chen-Zhu-Heng, clipping-aware; the default) or ``"mad"``.
    """
    if method == "pca":
        return pca_sigma(image)
    if method == "mad":
        return mad_sigma(image)
    raise InputError(f"noise estimation method must be one of {', '.join(NOISE_METHODS)}, got {method!r}")
