"""Image quality against a reference: PSNR, SSIM and the BT.601 Y channel — docs/design.md §6.

All functions take ``(B, C, H, W)`` tensors with values in [0, ``data_range``]
and return one value per image, shape ``(B,)``, computed in float64 (and
returned as float64). Ground truth is only ever used for reporting; the method
never sees it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputError

__all__ = ["psnr", "ssim", "rgb_to_y"]


def _check_pair(x: Tensor, ref: Tensor) -> None:
    for name, t in (("x", x), ("ref", ref)):
        if not isinstance(t, Tensor):
            raise InputError(f"{name} must be a torch tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise InputError(f"{name} must have shape (B, C, H, W), got {tuple(t.shape)}")
    if x.shape != ref.shape:
        raise InputError(f"image shapes differ: {tuple(x.shape)} vs reference {tuple(ref.shape)}")
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(ref).all())):
        raise InputError("images contain NaN or infinite values")


def _check_range(data_range: float) -> float:
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) \
            or not math.isfinite(data_range) or data_range <= 0:
        raise InputError(f"data_range must be a finite number > 0, got {data_range!r}")
    return float(data_range)


def rgb_to_y(x: Tensor) -> Tensor:
    """Luma Y of BT.601 YCbCr, studio range, as the reference computed it.

    ``Y = (219·(0.299 R + 0.587 G + 0.114 B) + 16) / 255`` for RGB in [0, 1];
    (B, 3, H, W) → (B, 1, H, W). A one-channel image is treated as R = G = B
    (so its Y is ``(219·v + 16)/255``, the same as for its RGB version).
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"rgb_to_y expects a (B, 3, H, W) or (B, 1, H, W) tensor, got {shape}")
    if x.shape[1] == 1:
        luma = x
    else:
        r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        luma = 0.299 * r + 0.587 * g + 0.114 * b
    return (219.0 * luma + 16.0) / 255.0


def psnr(x: Tensor, ref: Tensor, *, y_channel: bool = False, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per image, shape (B,).

    ``10·log10(data_range² / MSE)`` with the MSE over all of (C, H, W) —
    over the Y channel only when ``y_channel`` (see :func:`rgb_to_y`). Equal
    images give ``inf``.
    """
    _check_pair(x, ref)
    data_range = _check_range(data_range)
    x, ref = x.detach().double(), ref.detach().double()
    if y_channel:
        x, ref = rgb_to_y(x), rgb_to_y(ref)
    mse = ((x - ref) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_taps(sigma: float, truncate: float, device: torch.device) -> Tensor:
    # scipy.ndimage.gaussian_filter's kernel: radius int(truncate·sigma + 0.5).
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    taps = torch.exp(-0.5 * (t / sigma) ** 2)
    return taps / taps.sum()


def ssim(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity (Wang et al. 2004) per image, shape (B,), mean over channels.

    Matches ``skimage.metrics.structural_similarity(x, ref, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=data_range)``: an 11×11
    Gaussian window (σ = 1.5, truncate 3.5), K1 = 0.01, K2 = 0.03. skimage
    filters with reflection padding and then discards (11 − 1)/2 = 5 pixels at
    each border before averaging; those kept pixels never see the padding, so
    the same numbers come from a *valid* (unpadded) separable convolution,
    which is what this computes. Both sides must be at least 11 px.
    """
    _check_pair(x, ref)
    data_range = _check_range(data_range)
    sigma, truncate, k1, k2 = 1.5, 3.5, 0.01, 0.03
    b, c, h, w = x.shape
    taps = _gaussian_taps(sigma, truncate, x.device)
    win = taps.numel()
    if h < win or w < win:
        raise InputError(f"SSIM needs images of at least {win}x{win} px, got {w}x{h}")

    x = x.detach().double().reshape(b * c, 1, h, w)
    ref = ref.detach().double().reshape(b * c, 1, h, w)
    kh, kw = taps.view(1, 1, win, 1), taps.view(1, 1, 1, win)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, kh), kw)

    # Five filtered maps in one batched pass.
    stats = blur(torch.cat([x, ref, x * x, ref * ref, x * ref], dim=1).reshape(-1, 1, h, w))
    stats = stats.reshape(b * c, 5, *stats.shape[-2:])
    ux, uy, uxx, uyy, uxy = stats.unbind(dim=1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s_map.reshape(b, -1).mean(dim=1)
