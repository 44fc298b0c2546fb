"""Early stopping without ground truth (ES-WMV, "Early Stopping for Deep Image
Prior", arXiv 2112.06074).

DIP first fits the image's structure and later its noise.  The raw outputs
change little while the fit is good and keep drifting once it overfits; the
windowed moving variance (WMV) of the last ``window`` outputs tracks that.
The detector keeps the window of smallest variance seen and stops after
``patience`` iterations without a new minimum; its result is that window's
mean.
"""
from __future__ import annotations

from collections import deque
from typing import Optional

import torch
from torch import Tensor

from .settings import EarlyStopping

__all__ = ["WindowVariance", "WMVDetector"]


class WindowVariance:
    """Running windowed variance of a stream of tensors (float64 accumulators).

    :meth:`push` returns the mean over elements of the variance of the last
    ``window`` tensors (mean squared deviation from their mean), or None
    until the window is full.
    """

    def __init__(self, window: int):
        self.window = window
        self.items: deque[Tensor] = deque()
        self.sum: Tensor | None = None
        self.sumsq: Tensor | None = None

    def push(self, x: Tensor) -> float | None:
        x = x.detach().to(torch.float64)
        if self.sum is None:
            self.sum = torch.zeros_like(x)
            self.sumsq = torch.zeros_like(x)
        self.items.append(x)
        self.sum += x
        self.sumsq += x * x
        if len(self.items) > self.window:
            old = self.items.popleft()
            self.sum -= old
            self.sumsq -= old * old
        if len(self.items) < self.window:
            return None
        mean = self.mean()
        return float((self.sumsq / self.window - mean * mean).clamp_min(0).mean())

    def mean(self) -> Tensor:
        """Mean of the outputs in the window (float64)."""
        assert self.sum is not None
        return self.sum / len(self.items)


class WMVDetector:
    """ES-WMV on one member's raw outputs.

    :meth:`update` takes iteration ``it`` and the raw output and returns True
    when training should stop.  ``best_iteration`` is the last iteration of
    the most stable window, ``best_output`` (1, C, H, W) its mean, clamped to
    [0, 1]; ``variances`` the variance per iteration once the window is full.
    """

    def __init__(self, settings: EarlyStopping):
        self.settings = settings
        self.wv = WindowVariance(settings.window)
        self.best_variance = float("inf")
        self.best_iteration: Optional[int] = None
        self.best_output: Optional[Tensor] = None
        self.variances: list[float] = []

    def update(self, it: int, out: Tensor) -> bool:
        v = self.wv.push(out)
        if v is None:
            return False
        self.variances.append(v)
        if v < self.best_variance:
            self.best_variance, self.best_iteration = v, it
            self.best_output = self.wv.mean().to(out.dtype).clamp_(0, 1)
            return False
        return self.best_iteration is not None and it - self.best_iteration >= self.settings.patience
