"""The one handoff from the search to the report, the bundle and the exporters.

A :class:`TrainedRun` is a trained DIP network with everything needed to use
it again: its input code, its architecture, width and channels, the task it
was fitted for, and (when it was trained in this process) the DIP result.
The search returns one; ``restore`` wraps it in its result; run bundles save
and load one; the exporters take one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

import torch
from torch import Tensor, nn

from .dip import DIPResult
from .network import batch_statistics_only

__all__ = ["TrainedRun", "Restoration", "crop_box"]


def crop_box(out: Tensor, box: Optional[tuple[int, int, int, int]]) -> Tensor:
    """``out[..., top:top + height, left:left + width]`` for ``box = (top, left, height, width)``;
    ``out`` itself for None."""
    if box is None:
        return out
    top, left, h, w = (int(v) for v in box)
    return out[..., top:top + h, left:left + w]


@dataclass
class TrainedRun:
    """A trained network with its input code.

    ``network``: the module (BatchNorm in training mode: batch statistics);
    for a DIP run, its :class:`~isnas_fast.dip.averaging.AveragedNetwork`,
    whose output on ``z`` is the image the run returned.
    ``z``: (1, in_channels, H, W) float32 input code.  ``genotype``:
    ``"u,bits"`` or ``"dip-skip"``.  ``task`` / ``task_params``: the task's
    name and its JSON-able parameters.  ``dip``: the DIP result (losses,
    curves, the restored image) when the run was trained in this process;
    None for one loaded from a bundle.  ``crop``: ``(top, left, height,
    width)`` of the user's image in the network's output (output px) when
    the input was padded to the sizes the network needs, else None;
    :meth:`output` and the exported models return that region only.
    ``partner``: for a blend (``network`` a
    :class:`~isnas_fast.dip.blend.BlendedNetwork` whose first part is this
    run's own and second the partner's), the partner's run (its
    architecture, width, channels and code); else None.
    """

    network: nn.Module
    z: Tensor
    genotype: str
    width: int
    in_channels: int
    out_channels: int
    task: str
    task_params: dict = field(default_factory=dict)
    dip: Optional[DIPResult] = None
    crop: Optional[tuple[int, int, int, int]] = None
    partner: Optional["TrainedRun"] = None

    def output(self) -> Tensor:
        """The network's output on its code ``z`` -- for a DIP run, the image it returned --
        cut to the user's region (:attr:`crop`), (1, out_channels, H, W) float32 on the CPU.

        Training-mode BatchNorm (batch statistics), no autocast, as the run computed its
        returned image; running statistics are left untouched.
        """
        dev = next(self.network.parameters()).device
        with torch.no_grad(), batch_statistics_only(self.network) as net:
            return crop_box(net(self.z.to(dev)), self.crop).float().contiguous().cpu()

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of z and of the output."""
        return int(self.z.shape[2]), int(self.z.shape[3])


class Restoration(Protocol):
    """What a restoration hands to a bundle: its trained run, the restored
    image (1, C, H, W), the cropped ground truth if any, and its report."""

    run: TrainedRun
    tensor: Tensor
    ground_truth: Optional[Tensor]

    def report(self) -> dict: ...
