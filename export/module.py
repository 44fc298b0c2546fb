"""The module that gets exported: the trained network with train-mode BatchNorm made explicit.

DIP runs every BatchNorm in training mode (docs/design.md §3.1): each normalises with
the mean and (biased) variance of the current batch — here the one image —
over (N, H, W).  Exporters assume inference mode, where BatchNorm would use
the running statistics instead and give a different image; and a train-mode
BatchNorm inside ``torch.export`` mutates its running buffers.  So before
export each ``BatchNorm2d`` is replaced by :class:`BatchStatNorm2d`, which
computes exactly the train-mode output with plain ops (ReduceMean, Sub, Mul,
Sqrt in ONNX) and has no state to update.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["BatchStatNorm2d", "with_batch_statistics", "DeployModule", "NoInputModule"]


class BatchStatNorm2d(nn.Module):
    """Train-mode ``BatchNorm2d`` as a pure function: per-channel statistics of the input itself.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with ``mean`` and the
    biased ``var`` taken over (N, H, W) of ``x`` (B, C, H, W) — what
    ``nn.BatchNorm2d`` computes in training mode.  Running statistics are
    neither used nor updated.
    """

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.eps = float(bn.eps)
        c = bn.num_features
        w = bn.weight.detach().clone() if bn.weight is not None else torch.ones(c)
        b = bn.bias.detach().clone() if bn.bias is not None else torch.zeros(c)
        self.weight = nn.Parameter(w.reshape(1, c, 1, 1), requires_grad=False)
        self.bias = nn.Parameter(b.reshape(1, c, 1, 1), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=(0, 2, 3), keepdim=True)
        return centred * torch.rsqrt(var + self.eps) * self.weight + self.bias


def with_batch_statistics(net: nn.Module) -> nn.Module:
    """A copy of ``net`` (on the CPU, float32, eval mode) with every BatchNorm2d replaced by BatchStatNorm2d.

    Shared submodules stay shared (one replacement per BatchNorm object).
    The original network is not modified.
    """
    clone = copy.deepcopy(net).to("cpu", torch.float32)
    replaced: dict[int, BatchStatNorm2d] = {}

    def visit(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                if id(child) not in replaced:
                    replaced[id(child)] = BatchStatNorm2d(child)
                setattr(module, name, replaced[id(child)])
            else:
                visit(child)

    visit(clone)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in clone.modules()):
        raise TypeError("only BatchNorm2d is supported in exported networks")
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone.eval()


class DeployModule(nn.Module):
    """``forward(z) -> image``: the network with batch-statistics BatchNorm (ONNX graph input ``z``).

    ``crop``: ``(top, left, height, width)`` of the output to return (the
    user's image when the input was padded), or None for all of it.
    """

    def __init__(self, net: nn.Module, crop: Optional[tuple[int, int, int, int]] = None):
        super().__init__()
        self.net = with_batch_statistics(net)
        self.crop = None if crop is None else tuple(int(v) for v in crop)

    def forward(self, z: Tensor) -> Tensor:
        out = self.net(z)
        if self.crop is None:
            return out
        top, left, h, w = self.crop
        return out[:, :, top:top + h, left:left + w]


class NoInputModule(nn.Module):
    """``forward() -> image``: the network with its code ``z`` held as a buffer (the AOT package)."""

    def __init__(self, net: nn.Module, z: Tensor, crop: Optional[tuple[int, int, int, int]] = None):
        super().__init__()
        self.net = with_batch_statistics(net)
        self.register_buffer("z", z.detach().to("cpu", torch.float32).contiguous())
        self.crop = None if crop is None else tuple(int(v) for v in crop)

    def forward(self) -> Tensor:
        out = self.net(self.z)
        if self.crop is None:
            return out
        top, left, h, w = self.crop
        return out[:, :, top:top + h, left:left + w]
