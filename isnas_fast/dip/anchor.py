"""Two DIP starts shrunk toward a classical image by how well they agree.

A DIP super-resolution image carries, besides what the low-resolution
pixels determine, patterns the downsampler cannot see: on flat crops the
network's random start leaves a fine periodic pattern that no step removes
(bench/README.md, "Super-resolution").  Two random starts leave two
unrelated patterns, while what the data determines they share.  So with
``a`` and ``b`` the images of two starts and ``c`` a classical estimate (the
anchor: bicubic upsampling), the part of ``a - c`` and ``b - c`` the two
agree on is kept and the rest falls back to ``c``:

    d = (a + b) / 2 - c,      lambda = clip(<a - c, b - c> / |d|^2, 0, 1),
    output = c + lambda * d

(with K starts, the mean of ``<s_i - c, s_j - c>`` over pairs in the numerator).

``<a - c, b - c>`` estimates the power of the shared difference and
``|d|^2`` that plus half the unshared one, so ``lambda`` is the Wiener
factor of the mean of the two starts against the anchor when the starts'
shared error is small beside the anchor's.  Identical starts give
``lambda = 1`` (the mean of the starts); unrelated patterns around the
anchor give ``lambda`` near 0 (the anchor).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .averaging import network_output
from .monitor import DIPResult
from .restarts import merge_restarts

__all__ = ["AnchoredNetwork", "agreement_weight", "anchor_results"]


def _check(images: Sequence[Tensor]) -> None:
    shape = images[0].shape
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(f"images must be (1, C, H, W), got {tuple(shape)}")
    for t in images[1:]:
        if t.shape != shape:
            raise ValueError(f"images must share one shape, got {tuple(shape)} and {tuple(t.shape)}")


def agreement_weight(starts: Sequence[Tensor], anchor: Tensor) -> float:
    """``lambda`` in [0, 1]: the share of the starts' mean difference from ``anchor``
    that they agree on (module docstring): the mean over pairs of starts of
    ``<s_i - c, s_j - c>`` over ``|mean_i s_i - c|^2``.  ``starts``: K >= 2
    images, ``anchor``: one image, each (1, C, H, W) in [0, 1], of one shape;
    computed in float64.  1 when the starts' mean equals the anchor (nothing
    to shrink)."""
    if len(starts) < 2:
        raise ValueError("agreement_weight needs two or more starts")
    _check([*starts, anchor])
    c = anchor.double()
    d = [s.double() - c for s in starts]
    mean = sum(d) / len(d)
    power = float((mean * mean).sum())
    if not power > 0:
        return 1.0
    pairs = [float((d[i] * d[j]).sum()) for i in range(len(d)) for j in range(i + 1, len(d))]
    return min(max(sum(pairs) / len(pairs) / power, 0.0), 1.0)


class AnchoredNetwork(nn.Module):
    """``forward(z) = weight * network(z) + (1 - weight) * anchor``: a network (the
    merged starts, whose output is their mean image) shrunk toward a stored
    image.  ``anchor``: (1, C, H, W) float32, the buffer ``anchor``;
    ``weight``: in [0, 1], the buffer ``weight``.  ``in_channels`` is the
    network's; ``name``: what the anchor is (``"bicubic"``)."""

    def __init__(self, network: nn.Module, anchor: Tensor, weight: float, name: str = "bicubic"):
        super().__init__()
        if anchor.ndim != 4 or anchor.shape[0] != 1:
            raise ValueError(f"anchor must be (1, C, H, W), got {tuple(anchor.shape)}")
        w = float(weight)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {weight!r}")
        self.network = network
        self.name = str(name)
        self.register_buffer("anchor", anchor.detach().float().contiguous())
        self.register_buffer("weight", torch.tensor(w, dtype=torch.float32, device=anchor.device))
        self.in_channels = getattr(network, "in_channels", None)

    def forward(self, z: Tensor) -> Tensor:
        return self.network(z) * self.weight + self.anchor * (1 - self.weight)


def anchor_results(results: Sequence[DIPResult], seeds: Sequence[int], anchor: Tensor, name: str,
                   psnr: Optional[Callable[[Tensor], float]] = None) -> DIPResult:
    """K >= 2 starts of one architecture (:func:`~isnas_fast.dip.restarts.merge_restarts`)
    shrunk toward ``anchor`` ((1, C, H, W) in [0, 1], the runs' output shape; ``name`` says
    what it is, e.g. ``"bicubic"``) by :func:`agreement_weight` of the starts' images:
    ``network`` an :class:`AnchoredNetwork` on the merged starts, ``output`` its output
    clipped to [0, 1], ``anchored`` the name, the weight and K.  ``psnr`` (image -> dB,
    with ground truth) sets ``psnr_at_stop`` and each start's PSNR."""
    if len(results) < 2:
        raise ValueError("anchor_results needs two or more starts")
    merged = merge_restarts(results, seeds, psnr)
    weight = agreement_weight([r.output for r in results], anchor.to(merged.output.device))
    network = AnchoredNetwork(merged.network, anchor.to(merged.output.device), weight, name)
    output = network_output(network, merged.z).clamp(0, 1)
    return replace(
        merged, network=network, output=output, psnr_at_stop=psnr(output) if psnr is not None else merged.psnr_at_stop,
        averaged_over=f"{name} upsampling plus {weight:.3f} of the difference from it of {merged.averaged_over}",
        anchored={"anchor": name, "weight": round(weight, 6), "starts": len(results)})
