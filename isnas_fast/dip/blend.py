"""Two DIP runs of different architectures, served as one network: the mean of their images.

A DIP image is one draw: another network, or another random start, lands
elsewhere, and where two runs' errors differ their weighted mean can be
better than either (bench/README.md, "Blending NAS-DIP with DIP-skip").  Restarts of one
architecture merge into one :class:`~isnas_fast.dip.averaging.AveragedNetwork`
(:mod:`~isnas_fast.dip.restarts`); two architectures do not share weights'
shapes, so :class:`BlendedNetwork` keeps them side by side, each on its own
input code, and returns the weighted mean of their outputs (each already read
through its own clipped-noise readout, if it has one).  The first part's
code is the module's input, so a served or exported network has one input
as a plain run's has; the other parts' codes are buffers.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .averaging import network_output
from .monitor import DIPResult

__all__ = ["BlendedNetwork", "blend_results"]


class BlendedNetwork(nn.Module):
    """``forward(z) = w_0 parts[0](z) + Σ_{k≥1} w_k parts[k](codes[k-1])``.

    ``parts``: K ≥ 2 networks (each a run's averaged network) producing
    images of one shape; ``codes``: the K - 1 input codes of ``parts[1:]``,
    (1, C_k, H, W) float32 each, stored as buffers ``code_1`` ...;
    ``weights``: (K,) float32 summing to 1 (default uniform), the buffer
    ``weights``.  ``in_channels`` is the first part's.
    """

    def __init__(self, parts: Sequence[nn.Module], codes: Sequence[Tensor], weights: Optional[Tensor] = None):
        super().__init__()
        if len(parts) < 2 or len(codes) != len(parts) - 1:
            raise ValueError("a BlendedNetwork needs K >= 2 parts and the codes of all but the first")
        if weights is None:
            weights = torch.full((len(parts),), 1.0 / len(parts))
        if weights.shape != (len(parts),):
            raise ValueError(f"a BlendedNetwork of {len(parts)} parts needs {len(parts)} weights")
        self.parts = nn.ModuleList(parts)
        for k, c in enumerate(codes, start=1):
            if c.ndim != 4 or c.shape[0] != 1:
                raise ValueError(f"code {k} must be (1, C, H, W), got {tuple(c.shape)}")
            self.register_buffer(f"code_{k}", c.detach().float().contiguous())
        self.register_buffer("weights", weights.detach().float().contiguous().to(codes[0].device))
        self.in_channels = getattr(parts[0], "in_channels", None)

    def codes(self) -> list[Tensor]:
        """The stored codes of ``parts[1:]``, in order."""
        return [getattr(self, f"code_{k}") for k in range(1, len(self.parts))]

    def forward(self, z: Tensor) -> Tensor:
        out = self.parts[0](z) * self.weights[0]
        for k, (net, code) in enumerate(zip(list(self.parts)[1:], self.codes()), start=1):
            out = out + net(code) * self.weights[k]
        return out


def blend_results(results: Sequence[DIPResult], names: Sequence[str], weights: Sequence[float],
                  psnr: Optional[Callable[[Tensor], float]] = None) -> DIPResult:
    """The result of runs of different architectures on one image as one run's:
    ``network`` their :class:`BlendedNetwork` on the first run's code with
    ``weights`` (one per run, summing to 1), ``output`` its output clipped
    to [0, 1] (the weighted mean of the runs' images),
    ``seconds`` the runs' total; ``blended`` lists each run (its
    architecture ``names[k]``, steps run, stop, seconds and, with ``psnr``,
    its own image's PSNR).  The curves, losses and stop of the first run
    stay as they were; ``psnr`` (image (1, C, H, W) -> dB) also sets
    ``psnr_at_stop``."""
    if len(results) < 2 or len(names) != len(results) or len(weights) != len(results):
        raise ValueError("blend_results needs two or more results and one name and weight each")
    first = results[0]
    network = BlendedNetwork([r.network for r in results], [r.z for r in results[1:]],
                             torch.tensor([float(w) for w in weights]))
    output = network_output(network, first.z).clamp(0, 1)
    runs = []
    for name, w, r in zip(names, weights, results):
        entry = {"architecture": str(name), "weight": round(float(w), 6), "iterations_run": r.iterations_run, "stopped_at": r.stopped_at,
                 "seconds": round(r.seconds, 3)}
        if psnr is not None:
            entry["psnr"] = round(psnr(r.output), 4)
        runs.append(entry)
    others = ", ".join(str(n) for n in names[1:])
    return replace(
        first, output=output, network=network, seconds=sum(r.seconds for r in results), output_average=None,
        psnr_at_stop=psnr(output) if psnr is not None else first.psnr_at_stop,
        averaged_over=f"the weighted mean ({', '.join(f'{float(w):.3g}' for w in weights)}) of this run's "
                      f"image and {others}'s (each its own run, stop and readout); "
                      f"this run's: {first.averaged_over}",
        snapshots={}, raw_snapshots={}, blended=runs)
