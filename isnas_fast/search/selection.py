"""Pick a cohort member without ground truth (docs/design.md §5)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..quality import psnr, rgb_to_y

__all__ = ["selection_weights", "select_member"]


def selection_weights(values: Tensor) -> Tensor:
    """docs/design.md §5: ``w_i = (max m - m_i) / (max m - min m)``; all equal -> uniform."""
    v = values.to(torch.float64)
    span = v.max() - v.min()
    if not torch.isfinite(span) or span <= 0:
        return torch.ones_like(v)
    return (v.max() - v) / span


def select_member(outputs: Tensor, metric_values: Tensor, *, y_channel: bool = False) -> tuple[int, Tensor, Tensor]:
    """Pick the output closest (PSNR) to the metric-weighted average of all outputs.

    ``outputs``: (K, C, H, W) smoothed outputs of the cohort; ``metric_values``:
    (K,), lower is better.  Returns ``(index, psnr_to_average (K,), average
    (1, C, H, W))``.  ``y_channel`` compares on the Y channel (RGB SR).
    """
    w = selection_weights(metric_values).to(outputs.device)
    avg = (w.view(-1, 1, 1, 1) * outputs.to(torch.float64)).sum(0, keepdim=True) / w.sum()
    avg = avg.to(outputs.dtype)
    a, b = (outputs, avg.expand_as(outputs))
    if y_channel and outputs.shape[1] == 3:
        a, b = rgb_to_y(a), rgb_to_y(b)
    scores = psnr(a, b)
    # Ties (identical outputs) -> the better metric value wins, then list order.
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), float(metric_values[i]), i))
    return order[0], scores, avg
