"""The network a DIP run returns: a small ensemble that a served model reproduces (docs/design.md §6).

A DIP estimate is an average over steps of the raw outputs ``f_{w_i}(z + n_i)``
(weights ``w_i`` before step ``i``'s update, input noise ``n_i``): their
exponential moving average, or the mean of an early-stopping detector's
window.  No single network computes such an average, so a saved or exported
network could not reproduce it.  Averaging the weights alone
(``f_w̄(z)``) loses clearly against the output mean (bench/README.md):
early in a run the weights move along a curved path, and averaging over
the input noise itself smooths the outputs.

So the run cuts the averaged steps into consecutive blocks of ``block``
steps, averages the weights within each block (``w̄_j``) and keeps one
noisy input of each block (``z + n_j``, its first step's).  The returned
image is the weighted mean over the blocks inside the detector's window
(or carrying the EMA's weight)::

    x̂ = Σ_j c_j f_{w̄_j}(z + n_j)

computed after the run without autocast, BatchNorm using the batch
statistics of the one image: exactly what :class:`AveragedNetwork` computes,
and that module is what the run's network becomes, so bundles and exported
models reproduce the returned image.  ``c_j`` is the share of the window's
steps (or of the EMA's weight) falling in block ``j``.  A window of ``n``
steps has about :data:`BLOCKS` blocks; a block straddling the window's start
is averaged over all its steps.
"""
from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..network import batch_statistics_only
from .readout import apply_readout

__all__ = ["AveragedNetwork", "BlockAverages", "Member", "network_output", "BLOCKS", "block_length",
           "ema_span"]

#: Blocks a window is cut into: members of the returned ensemble (bench/README.md measures 1, 4, 8, 16).
BLOCKS = 16


def block_length(span: int, blocks: Optional[int] = None) -> int:
    """Steps per block so that ``span`` steps make at most ``blocks`` (default :data:`BLOCKS`) blocks."""
    return max(1, math.ceil(span / max(1, BLOCKS if blocks is None else blocks)))


def ema_span(decay: float) -> int:
    """Steps an EMA with weight ``decay`` of the old value is truncated to: those carrying
    95 % of its weight (300 steps at 0.99)."""
    return max(1, math.ceil(3.0 / max(1e-6, 1.0 - decay)))


def network_output(network: nn.Module, z: Tensor) -> Tensor:
    """``network(z)`` without gradients or autocast, train-mode BatchNorm using batch statistics
    (running statistics untouched); (1, C, H, W) float32 on the network's device."""
    dev = next(network.parameters()).device
    with torch.no_grad(), batch_statistics_only(network) as net:
        return net(z.to(dev)).float().contiguous()


class AveragedNetwork(nn.Module):
    """``forward(z) = r(Σ_j c_j members[j](z + offsets[j]))``: the network a DIP run returns.

    ``members``: K networks of one architecture (block-averaged weights);
    ``offsets``: (K, C_in, H, W) float32, the input noise of each member
    (so the code z stays the run's code); ``coefficients``: (K,) float32
    summing to 1.  ``readout``: None (``r`` the identity) or a (n,) float32
    table that ``r`` reads by linear interpolation
    (:func:`~isnas_fast.dip.readout.apply_readout`; a denoising run's
    clipped-noise readout).  ``in_channels`` mirrors the members'.
    BatchNorm in the members keeps its training mode (batch statistics of
    the one image).
    """

    def __init__(self, members: Sequence[nn.Module], offsets: Tensor, coefficients: Tensor,
                 readout: Optional[Tensor] = None):
        super().__init__()
        if not members or offsets.shape[0] != len(members) or coefficients.shape != (len(members),):
            raise ValueError("AveragedNetwork needs K members, K offsets and K coefficients")
        self.members = nn.ModuleList(members)
        self.register_buffer("offsets", offsets.detach().float().contiguous())
        self.register_buffer("coefficients", coefficients.detach().float().contiguous())
        if readout is not None:
            if readout.ndim != 1 or readout.shape[0] < 2:
                raise ValueError("an AveragedNetwork's readout is a (n,) table, n >= 2")
            self.register_buffer("readout", readout.detach().float().contiguous().to(self.offsets.device))
        else:
            self.readout = None
        self.in_channels = getattr(members[0], "in_channels", offsets.shape[1])

    def forward(self, z: Tensor) -> Tensor:
        out: Optional[Tensor] = None
        for j, net in enumerate(self.members):
            o = net(z + self.offsets[j : j + 1]) * self.coefficients[j]
            out = o if out is None else out + o
        assert out is not None
        if self.readout is not None:
            out = apply_readout(out, self.readout)
        return out

    @classmethod
    def like(cls, network: nn.Module, members: int, z_shape: Sequence[int],
             readout_points: Optional[int] = None) -> "AveragedNetwork":
        """An ensemble of ``members`` copies of ``network`` with zero offsets for a code of ``z_shape``,
        uniform coefficients and, with ``readout_points``, a readout of that many zeros: the skeleton a
        saved state dict is loaded into."""
        readout = None if readout_points is None else torch.zeros(readout_points)
        return cls([copy.deepcopy(network) for _ in range(members)],
                   torch.zeros((members, *tuple(z_shape)[1:])), torch.full((members,), 1.0 / members), readout)


@dataclass
class Member:
    """One block: the sum of the weights of its steps, their number, its first step and that step's input."""

    start: int
    sums: list[Tensor]
    count: int
    input: Tensor

    @property
    def end(self) -> int:
        return self.start + self.count - 1

    def frozen(self) -> "Member":
        """A copy that later steps do not change."""
        return Member(self.start, [t.clone() for t in self.sums], self.count, self.input)


class BlockAverages:
    """Block sums of one network's weights over the last ``keep`` steps of a run.

    :meth:`add` is called before every step's update with that step's noisy
    input, so block ``j`` holds the weights that produced the outputs of
    its steps.  Blocks are aligned to multiples of ``block`` steps.
    """

    def __init__(self, network: nn.Module, block: int, keep: int):
        self.params = list(network.parameters())
        self.block, self.keep = block, keep
        self.blocks: deque[Member] = deque()
        self.it = 0

    def add(self, it: int, x: Tensor) -> None:
        """Add the current (pre-update) weights of step ``it`` (1-based), fed ``x``."""
        self.it = it
        with torch.no_grad():
            current = [p.detach() for p in self.params]
            last = self.blocks[-1] if self.blocks else None
            if last is None or (it - 1) // self.block != (last.start - 1) // self.block:
                self.blocks.append(Member(it, [t.clone() for t in current], 1, x.detach().clone()))
            else:
                torch._foreach_add_(last.sums, current)
                last.count += 1
            while self.blocks and self.blocks[0].end <= it - self.keep:
                self.blocks.popleft()

    def window(self, span: int) -> tuple[list[Member], list[float]]:
        """The blocks of the last ``span`` steps and their shares of those steps (the last
        block frozen, since later steps would change it)."""
        first = self.it - span + 1
        members, coefs = [], []
        for m in self.blocks:
            inside = min(m.end, self.it) - max(m.start, first) + 1
            if inside > 0:
                members.append(m)
                coefs.append(float(inside))
        return self._finish(members, coefs)

    def ema(self, decay: float) -> tuple[list[Member], list[float]]:
        """The blocks weighted as an exponential moving average (weight ``decay`` of the old
        value) of the outputs up to now weighs their steps."""
        members, coefs = [], []
        for m in self.blocks:
            ages = range(self.it - m.end, self.it - m.start + 1)
            members.append(m)
            coefs.append(sum(decay ** a for a in ages))
        return self._finish(members, coefs)

    def _finish(self, members: list[Member], coefs: list[float]) -> tuple[list[Member], list[float]]:
        if members and members[-1] is self.blocks[-1]:
            members[-1] = members[-1].frozen()
        total = sum(coefs)
        return members, [c / total for c in coefs]


def build_averaged(network: nn.Module, z: Tensor, members: list[Member], coefs: list[float],
                   readout: Optional[Tensor] = None) -> AveragedNetwork:
    """The :class:`AveragedNetwork` of ``members`` (block sums) with coefficients ``coefs``:
    copies of ``network`` holding each block's mean weights, and ``readout`` (None: none)."""
    nets = []
    for m in members:
        net = copy.deepcopy(network)
        with torch.no_grad():
            for p, s in zip(net.parameters(), m.sums):
                p.copy_(s / m.count)
        nets.append(net)
    offsets = torch.cat([m.input - z for m in members]).float()
    coefficients = torch.tensor(coefs, dtype=torch.float32, device=offsets.device)
    return AveragedNetwork(nets, offsets, coefficients, readout).to(z.device)
