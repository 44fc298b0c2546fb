"""Networks of the search space and the fixed baselines (docs/design.md §3.1–3.3).

``build_network`` turns a :class:`~isnas_fast.genotype.Genotype` (or a baseline
name) into a ``torch.nn.Module`` mapping an input code ``z`` of shape
``(B, C_in, H, W)`` (H, W multiples of 32) to an image ``(B, C_out, H, W)`` in
(0, 1).  BatchNorm is meant to run in training mode (batch statistics) for
all of DIP, including scoring; callers keep the module in ``train()`` mode.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Union

import torch
from torch import Tensor, nn

from .device import memory_format
from .errors import InputError
from .genotype import BASELINES, Genotype, UpsampleCell

__all__ = [
    "build_network",
    "CrossScaleUNet",
    "DIPSkip",
    "UpsampleBlock",
    "Upsample2x",
    "nearest_upsample_2x",
    "count_parameters",
    "BASELINE_NAMES",
    "BASELINE_INPUT_CHANNELS",
    "baseline_input_channels",
    "resolve_architecture",
    "batch_statistics_only",
]

BASELINE_NAMES = ("nasdip-denoise", "nasdip-inpaint", "nasdip-sr", "dip-skip")


def _act(name: str) -> nn.Module:
    # In place: every activation follows an op (conv, BatchNorm, resize, shuffle)
    # whose backward does not need its output, so overwriting it saves one
    # tensor allocation and one pass over memory per activation.
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    return nn.Identity()


def nearest_upsample_2x(x: Tensor) -> Tensor:
    """x2 nearest-neighbour upsampling as a broadcast: ``(B, C, H, W) -> (B, C, 2H, 2W)``.

    The same values as ``F.interpolate(x, scale_factor=2, mode="nearest")``
    (each pixel copied to a 2x2 block), but its backward is a sum over the
    copies rather than a scatter-add, which compiles to far faster CPU code
    (see :mod:`isnas_fast.compiling`).
    """
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


class Upsample2x(nn.Upsample):
    """``nn.Upsample(scale_factor=2, mode=mode)``; inside compiled graphs the
    nearest mode runs as :func:`nearest_upsample_2x` (same values)."""

    def __init__(self, mode: str):
        super().__init__(scale_factor=2, mode=mode)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "nearest" and x.dim() == 4 and torch.compiler.is_compiling():
            return nearest_upsample_2x(x)
        return super().forward(x)


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    """Convolution with reflection padding k//2 and bias (the U-Net's own convs)."""
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, padding_mode="reflect", bias=True)


def _conv_bn_act(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [_conv(c_in, c_out, k, stride), nn.BatchNorm2d(c_out), _act("leaky_relu")]


class _SplitStackSum(nn.Module):
    """Split channels into 4 equal groups, sum them, then conv k x k (C/4 -> C_out)."""

    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__()
        if c_in % 4:
            raise InputError(f"split-stack-sum needs channels divisible by 4, got {c_in}")
        self.conv = nn.Conv2d(c_in // 4, c_out, k, padding=k // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a, b, c, d = torch.chunk(x, 4, dim=1)
        return self.conv(a + b + c + d)


def _conv_op(kind: str, c_in: int, c_out: int, k: int) -> nn.Module:
    """The resolution-keeping op of an upsampling cell (zero padding k//2, no bias)."""
    p = k // 2
    if kind == "conv":
        return nn.Conv2d(c_in, c_out, k, padding=p, bias=False)
    if kind == "trans_conv":
        # The reference builds nn.ConvTranspose2d with its default bias (True).
        return nn.ConvTranspose2d(c_in, c_out, k, stride=1, padding=p, bias=True)
    if kind == "split_stack_sum":
        return _SplitStackSum(c_in, c_out, k)
    if kind == "sep_conv":
        return nn.Sequential(
            nn.Conv2d(c_in, c_in, k, padding=p, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )
    if kind == "depthwise_conv":
        if c_in % c_out:
            raise InputError(f"depthwise conv cannot map {c_in} to {c_out} channels")
        return nn.Conv2d(c_in, c_out, k, padding=p, groups=c_out, bias=False)
    if kind == "identity":
        if c_in != c_out:
            raise InputError(f"identity op cannot map {c_in} to {c_out} channels")
        return nn.Identity()
    raise InputError(f"unknown conv op {kind!r}")


class UpsampleBlock(nn.Module):
    """The x2 upsampling cell ``Up(u)`` (docs/design.md §3.2): two ops, each followed by
    the cell's activation (the identity op has none).  ``(B, c_in, H, W) ->
    (B, c_out, 2H, 2W)``."""

    def __init__(self, cell: UpsampleCell, c_in: int, c_out: int):
        super().__init__()
        self.cell = cell
        act = cell.activation
        k = cell.kernel
        ops: list[nn.Module] = []
        if cell.primitive == "trans_conv":
            ops += [nn.ConvTranspose2d(c_in, c_out, k, stride=2, padding=k // 2, output_padding=1), _act(act)]
        elif cell.conv_first:  # conv (C -> 4 C_out), then pixel shuffle
            ops += [_conv_op(cell.conv, c_in, 4 * c_out, k), _act(act), nn.PixelShuffle(2), _act(act)]
        else:
            if cell.primitive == "pixel_shuffle":
                if c_in % 4:
                    raise InputError(f"pixel shuffle needs channels divisible by 4, got {c_in}")
                ops += [nn.PixelShuffle(2), _act(act)]
                c_mid = c_in // 4
            else:
                ops += [Upsample2x(cell.primitive), _act(act)]
                c_mid = c_in
            ops.append(_conv_op(cell.conv, c_mid, c_out, k))
            if cell.conv != "identity":
                ops.append(_act(act))
        self.ops = nn.Sequential(*[m for m in ops if not isinstance(m, nn.Identity)])
        # "bilinear|nearest -> conv k x k" cells can run as one fused kernel
        # (docs/design.md §7 (b)); a plain int, so parameters and state_dict keys are unchanged.
        self._fused_conv: int | None = None
        if not cell.conv_first and cell.primitive in ("bilinear", "nearest") and cell.conv == "conv":
            self._fused_conv = next(i for i, m in enumerate(self.ops) if isinstance(m, nn.Conv2d))

    def forward(self, x: Tensor) -> Tensor:
        fused = getattr(self, "_fused_conv", None)
        # Compiled, traced and exported graphs keep the plain ops: Inductor fuses
        # them itself, and exporters cannot look inside a Triton kernel.
        if fused is not None and not (torch.compiler.is_compiling() or torch.jit.is_tracing()):
            from . import kernels  # the one dispatcher decides (docs/design.md §2)

            if kernels.backend(device=x.device) == "triton":
                return kernels.upsample_conv(
                    x, self.ops[fused].weight, self.cell.primitive, self.cell.activation, backend="triton"
                )
        return self.ops(x)


class CrossScaleUNet(nn.Module):
    """The NAS-DIP cross-scale U-Net of a genotype (docs/design.md §3.1).

    Only the skip modules the genotype uses are built.  The down-blocks and
    upsampling cells of the skip paths are *shared* per scale transition:
    ``skip_down[t]`` maps scale t -> t+1 and ``skip_up[t]`` maps t -> t-1 for
    every path that crosses that transition.
    """

    def __init__(self, genotype: Genotype, in_channels: int, out_channels: int, width: int = 128):
        super().__init__()
        cell = genotype.cell
        # A pixel shuffle followed by split-stack-sum divides the channels by 16.
        if width < 16 or width % 16:
            raise InputError(f"width must be a positive multiple of 16, got {width}")
        self.genotype = genotype
        self.in_channels, self.out_channels, self.width = in_channels, out_channels, width
        W = width
        S = genotype.matrix
        self.enc = nn.ModuleList(
            nn.Sequential(*_conv_bn_act(in_channels if i == 0 else W, W, 3, 2), *_conv_bn_act(W, W, 3))
            for i in range(5)
        )
        self.up = nn.ModuleList(UpsampleBlock(cell, W, W) for _ in range(5))  # up[l-1] feeds add_l
        self.dec = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(W), *_conv_bn_act(W, W, 3), *_conv_bn_act(W, W, 3), *_conv_bn_act(W, W, 1))
            for _ in range(5)
        )
        self.out = _conv(W, out_channels, 1)
        # Which skip modules are used.
        same: dict[str, nn.Module] = {}
        down_needed: set[int] = set()
        up_needed: set[int] = set()
        for r in range(5):
            for c in range(5):
                if not S[r][c]:
                    continue
                if c == r:
                    same[str(r)] = nn.Sequential(*_conv_bn_act(in_channels if c == 0 else W, W, 1))
                elif c < r:
                    down_needed.update(range(c, r))
                else:
                    up_needed.update(range(r + 1, c + 1))
        self.skip_same = nn.ModuleDict(same)
        self.skip_down = nn.ModuleDict(
            {str(t): nn.Sequential(*_conv_bn_act(in_channels if t == 0 else W, W, 3, 2)) for t in sorted(down_needed)}
        )
        self.skip_up = nn.ModuleDict({str(t): UpsampleBlock(cell, W, W) for t in sorted(up_needed)})
        self._rows = [[c for c in range(5) if S[r][c]] for r in range(5)]

    def forward(self, z: Tensor) -> Tensor:
        """``z``: (B, C_in, H, W), H and W multiples of 32 -> (B, C_out, H, W) in (0, 1), contiguous."""
        feats = [_in_layout(z, self.out.weight)]
        for enc in self.enc:
            feats.append(enc(feats[-1]))
        # Intermediate results of the shared skip chains, keyed by (source, scale):
        # a chain applied to the same source is the same function, so it is computed once.
        # (A method, not a recursive closure: a closure that calls itself is a reference
        # cycle, which would keep every step's activations and autograd graph alive
        # until the cyclic garbage collector happens to run.)
        cache: dict[tuple[int, int], Tensor] = {}
        x = feats[5]
        for level in range(5, 0, -1):
            r = level - 1
            acc = self.up[r](x)
            for i, c in enumerate(self._rows[r]):
                # The first sum is a new tensor (the cell's output may be saved by its
                # activation's backward); later terms are added into it in place.
                skip = self._path(c, r, feats, cache)
                acc = acc + skip if i == 0 else acc.add_(skip)
            x = self.dec[r](acc)
        return torch.sigmoid(self.out(x)).contiguous()

    def _path(self, c: int, r: int, feats: list[Tensor], cache: dict[tuple[int, int], Tensor]) -> Tensor:
        """Encoder level ``c``'s features carried to decoder level ``r`` by its skip chain."""
        if c == r:
            return self.skip_same[str(r)](feats[c])
        key = (c, r)
        if key not in cache:
            if c < r:
                prev = feats[c] if r - 1 == c else self._path(c, r - 1, feats, cache)
                cache[key] = self.skip_down[str(r - 1)](prev)
            else:
                prev = feats[c] if r + 1 == c else self._path(c, r + 1, feats, cache)
                cache[key] = self.skip_up[str(r + 1)](prev)
        return cache[key]


class _DIPSkipLevel(nn.Module):
    def __init__(self, d: int, skip_ch: int, upsample: str, deeper: "nn.Module | None"):
        super().__init__()
        self.skip = nn.Sequential(*_conv_bn_act(d, skip_ch, 1)) if skip_ch else None
        parts: list[nn.Module] = [*_conv_bn_act(d, 128, 3, 2), *_conv_bn_act(128, 128, 3)]
        if deeper is not None:
            parts.append(deeper)
        parts.append(Upsample2x(upsample))
        self.deeper = nn.Sequential(*parts)
        self.bn = nn.BatchNorm2d(skip_ch + 128)
        self.post = nn.Sequential(*_conv_bn_act(skip_ch + 128, 128, 3), *_conv_bn_act(128, 128, 1))

    def forward(self, x: Tensor) -> Tensor:
        deep = self.deeper(x)
        if self.skip is not None:
            sk = self.skip(x)
            h, w = min(sk.shape[2], deep.shape[2]), min(sk.shape[3], deep.shape[3])
            sk = _center_crop(sk, h, w)
            deep = _center_crop(deep, h, w)
            deep = torch.cat([sk, deep], dim=1)
        return self.post(self.bn(deep))


def _in_layout(z: Tensor, weight: Tensor) -> Tensor:
    """The input code in the memory layout of the network's weights (channels-last on the CPU)."""
    if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return z.contiguous(memory_format=torch.channels_last)
    return z


def _center_crop(x: Tensor, h: int, w: int) -> Tensor:
    dh, dw = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, dh : dh + h, dw : dw + w]


class DIPSkip(nn.Module):
    """The original DIP "skip" network (docs/design.md §3.3): 5 scales, 128 channels,
    ``skip_channels`` concatenated skips, bilinear (or nearest) upsampling."""

    def __init__(self, in_channels: int = 32, out_channels: int = 3, skip_channels: int = 4, upsample: str = "bilinear"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        deeper: nn.Module | None = None
        for i in range(4, -1, -1):
            deeper = _DIPSkipLevel(in_channels if i == 0 else 128, skip_channels, upsample, deeper)
        self.body = deeper
        self.out = _conv(128, out_channels, 1)

    def forward(self, z: Tensor) -> Tensor:
        """``z``: (B, C_in, H, W) -> (B, C_out, H, W) in (0, 1), contiguous."""
        return torch.sigmoid(self.out(self.body(_in_layout(z, self.out.weight)))).contiguous()


Architecture = Union[Genotype, str]


#: Channels of the input code of the NAS-DIP and DIP baselines (docs/design.md §3.3).
BASELINE_INPUT_CHANNELS = 32


def baseline_input_channels(arch: Any, image_channels: int) -> int:
    """Input-code channels for a fixed architecture: 32 for a baseline given by
    name (as NAS-DIP and DIP feed them), the image's own otherwise."""
    named = isinstance(arch, str) and arch.strip().lower() in BASELINE_NAMES
    return BASELINE_INPUT_CHANNELS if named else image_channels


def resolve_architecture(arch: Architecture) -> Union[Genotype, str]:
    """Turn a baseline name or genotype text into a Genotype (or ``"dip-skip"``)."""
    if isinstance(arch, Genotype):
        return arch
    if not isinstance(arch, str):
        raise InputError(f"architecture must be a Genotype, a genotype string or a name, got {type(arch).__name__}")
    name = arch.strip().lower()
    if name == "dip-skip":
        return name
    if name in BASELINES:
        return BASELINES[name]
    if "," in name or "_skip_" in name:
        return Genotype.parse(arch)
    raise InputError(f"unknown architecture {arch!r}: use one of {', '.join(BASELINE_NAMES)} or a genotype 'u,bits'")


def build_network(
    genotype: Architecture,
    in_channels: int,
    out_channels: int,
    width: int = 128,
    *,
    task: str | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Build the network of a genotype or baseline name, in training mode.

    ``genotype``: a :class:`Genotype`, ``"u,bits"`` text or one of
    ``"nasdip-denoise"``, ``"nasdip-inpaint"``, ``"nasdip-sr"``, ``"dip-skip"``.
    ``width`` is the channel count W of the cross-scale U-Net (multiple of 16);
    ``dip-skip`` has fixed width 128 and uses 128-channel skips and nearest
    upsampling when ``task == "inpaint"``.  The module maps ``(B, in_channels,
    H, W)`` to ``(B, out_channels, H, W)``; H, W multiples of 32.  Its weights
    and activations use the device's memory layout
    (:func:`isnas_fast.device.memory_format`: channels-last on the CPU).
    """
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    arch = resolve_architecture(genotype)
    factory = torch.device(device) if device is not None else None
    with torch.device(factory) if factory is not None else contextlib.nullcontext():
        if arch == "dip-skip":
            inpaint = task == "inpaint"
            net: nn.Module = DIPSkip(in_channels, out_channels, 128 if inpaint else 4, "nearest" if inpaint else "bilinear")
        else:
            assert isinstance(arch, Genotype)
            net = CrossScaleUNet(arch, in_channels, out_channels, width)
    return net.to(memory_format=memory_format(factory)).train()


@contextlib.contextmanager
def batch_statistics_only(net: nn.Module) -> Iterator[nn.Module]:
    """Run ``net`` with train-mode BatchNorm (batch statistics) without touching its running stats.

    With ``track_running_stats = False`` a training-mode BatchNorm normalises
    with the batch statistics exactly as before but updates no buffer, so
    evaluating f(z) leaves the module as it was.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.track_running_stats) for m in bns]
    was_training = net.training
    try:
        net.train()
        for m in bns:
            m.track_running_stats = False
        yield net
    finally:
        for m, flag in saved:
            m.track_running_stats = flag
        net.train(was_training)


def count_parameters(net: nn.Module) -> int:
    """Number of distinct parameters (shared modules counted once)."""
    return sum(p.numel() for p in net.parameters())
