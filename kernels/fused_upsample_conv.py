"""Fused x2 upsample + k x k convolution: Triton kernel beside its PyTorch
reference (docs/design.md §3.2 "Upsampling cell", §7 (b)).

An upsampling cell ``bilinear|nearest -> conv k x k`` computes::

    y = act(conv2d(act(upsample2x(x)), weight, padding=k // 2))    # no bias

(each op of the cell is followed by the cell's activation: none | ReLU |
LeakyReLU(0.2)).  The reference materialises the (N, C, 2H, 2W) upsampled
tensor; the kernel never writes it: every output tile gathers, per kernel tap
and input-channel block, the 1 (nearest) or 4 (bilinear) source pixels of
the upsampled values it needs, interpolates them in registers, applies the
first activation and feeds the tile to ``tl.dot`` (an implicit GEMM over
``C_in x k x k``).

Resize semantics are those of ``nn.Upsample(scale_factor=2)``:

* nearest: ``src = dst // 2``.
* bilinear, ``align_corners=False``: ``src = max((dst + 0.5) / 2 - 0.5, 0)``,
  ``i0 = floor(src)``, ``i1 = min(i0 + 1, n - 1)``, ``lambda = src - i0``
  (so interior outputs are 0.25/0.75 blends and the borders replicate).

The conv's zero padding is padding of the *upsampled, activated* tensor;
``act(0) = 0`` for all three activations, so out-of-range taps contribute 0.

Precision: float32 inputs are computed in exact float32 (``tl.dot`` with
``input_precision="ieee"``, not TF32); with a bfloat16 / float16 weight the
input (same dtype, or float32 under autocast) is interpolated in float32,
rounded to the weight's dtype before the product (as the unfused pipeline
rounds the upsampled tensor), multiplied on tensor cores with float32
accumulation, and the output is rounded once to the weight's dtype.

Backward is not fused (docs/design.md §7): :class:`UpsampleConvFunction` recomputes
the reference under ``enable_grad`` and differentiates it.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

from ._triton import interpreting, jit as _jit, tl, triton  # stand-ins where Triton is absent


__all__ = [
    "MODES",
    "ACTIVATIONS",
    "upsample_conv_reference",
    "upsample_conv_forward",
    "UpsampleConvFunction",
    "triton_upsample_conv",
    "FIXED_GPU_CONFIG",
]

#: Resize modes of the fused kernel (``nn.Upsample`` names).
MODES = ("nearest", "bilinear")
#: Activation names (the cell's; None means none).
ACTIVATIONS = ("none", "relu", "leaky_relu")
_MODE_CODE = {"nearest": 0, "bilinear": 1}
_ACT_CODE = {"none": 0, "relu": 1, "leaky_relu": 2}
_LEAKY_SLOPE = 0.2
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _canonical_activation(activation: Optional[str]) -> str:
    name = "none" if activation is None else str(activation).strip().lower().replace("-", "_")
    name = {"leaky": "leaky_relu", "leakyrelu": "leaky_relu", "identity": "none"}.get(name, name)
    if name not in _ACT_CODE:
        raise InputError(f"unknown activation {activation!r}: choose none, relu, leaky_relu")
    return name


def _canonical_mode(mode: str) -> str:
    name = str(mode).strip().lower()
    if name not in _MODE_CODE:
        raise InputError(f"unknown upsampling mode {mode!r}: the fused kernel supports {', '.join(MODES)}")
    return name


def _activate(t: Tensor, activation: str) -> Tensor:
    if activation == "relu":
        return F.relu(t)
    if activation == "leaky_relu":
        return F.leaky_relu(t, _LEAKY_SLOPE)
    return t


# --------------------------------------------------------------------------- #
# Reference
# --------------------------------------------------------------------------- #
def upsample_conv_reference(
    x: Tensor, weight: Tensor, mode: str = "bilinear", activation: Optional[str] = None
) -> Tensor:
    """``act(conv2d(act(upsample2x(x)), weight, padding=k//2))``, plain PyTorch.

    Args:
        x: ``(N, C_in, H, W)``.
        weight: ``(C_out, C_in, k, k)``, k odd; no bias.
        mode: ``"bilinear"`` (align_corners=False) or ``"nearest"``, as
            ``nn.Upsample(scale_factor=2, mode=mode)``.
        activation: None / ``"none"``, ``"relu"`` or ``"leaky_relu"`` (slope 0.2),
            applied after the resize and after the conv.

    Returns:
        ``(N, C_out, 2H, 2W)`` in ``weight``'s dtype.  ``x`` has the weight's
        dtype, or is float32 with a bf16 / fp16 weight (what autocast feeds
        the cell: the upsampled tensor is rounded to the weight's dtype before
        the conv).
    """
    mode, act = _canonical_mode(mode), _canonical_activation(activation)
    up = F.interpolate(x, scale_factor=2.0, mode=mode, align_corners=False if mode == "bilinear" else None)
    up = _activate(up, act)
    if up.dtype != weight.dtype:  # float32 x, low-precision weight: as autocast feeds the conv
        up = up.to(weight.dtype)
    k = weight.shape[-1]
    return _activate(F.conv2d(up, weight, padding=k // 2), act)


# --------------------------------------------------------------------------- #
# Kernel
# --------------------------------------------------------------------------- #
@_jit
def _apply_act(v, ACT: tl.constexpr):
    if ACT == 1:
        v = tl.maximum(v, 0.0)
    if ACT == 2:
        v = tl.where(v > 0.0, v, v * 0.2)
    return v


@_jit
def _round_bf16(v):
    """fp32 -> the nearest-even bfloat16 value, kept in fp32 (finite inputs).

    Used only under the interpreter, whose fp32 -> bf16 cast truncates
    (compiled Triton rounds to nearest even, as PyTorch does)."""
    bits = v.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@_jit
def _source_index(u, n_src, n_up, MODE: tl.constexpr):
    """Upsampled coordinate ``u`` -> (i0, i1, lambda, in range) along one axis."""
    inside = (u >= 0) & (u < n_up)
    if MODE == 1:
        src = tl.maximum(u.to(tl.float32) * 0.5 - 0.25, 0.0)  # (u + 0.5) / 2 - 0.5, clamped at 0
        i0 = tl.minimum(src.to(tl.int32), n_src - 1)  # trunc == floor for src >= 0
        lam = src - i0.to(tl.float32)
        i1 = tl.minimum(i0 + 1, n_src - 1)
    else:
        i0 = tl.minimum(tl.maximum(u, 0) // 2, n_src - 1)
        i1 = i0
        lam = tl.zeros(u.shape, dtype=tl.float32)
    return i0, i1, lam, inside


@_jit
def _upsample_conv_kernel(
    x_ptr,  # (N, C_in, H, W), any strides
    w_ptr,  # (k, k, C_in, C_out) contiguous, x's dtype
    y_ptr,  # (N, C_out, 2H, 2W), any strides
    C_IN, H, W, C_OUT,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    K: tl.constexpr,
    MODE: tl.constexpr,  # 0 nearest, 1 bilinear
    ACT: tl.constexpr,  # 0 none, 1 relu, 2 leaky_relu(0.2)
    LOW_PRECISION: tl.constexpr,  # bf16 / fp16 inputs: tensor-core dot
    UPCAST_DOT: tl.constexpr,  # do the low-precision product in fp32 (interpreter)
    IS_BF16: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_CO: tl.constexpr,
    BLOCK_CI: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_co = tl.program_id(1)
    n = tl.program_id(2)
    OH = 2 * H
    OW = 2 * W
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)  # flat output pixel
    p_ok = p < OH * OW
    oy = p // OW
    ox = p - oy * OW
    co = pid_co * BLOCK_CO + tl.arange(0, BLOCK_CO)
    co_ok = co < C_OUT
    ci_r = tl.arange(0, BLOCK_CI)
    x_n = x_ptr + n.to(tl.int64) * sxn
    acc = tl.zeros([BLOCK_P, BLOCK_CO], dtype=tl.float32)

    for ky in tl.static_range(K):
        y0, y1, ly, y_in = _source_index(oy + (ky - K // 2), H, OH, MODE)
        for kx in tl.static_range(K):
            x0, x1, lx, x_in = _source_index(ox + (kx - K // 2), W, OW, MODE)
            ok = p_ok & y_in & x_in
            off00 = (y0 * sxh + x0 * sxw)[:, None]
            if MODE == 1:
                off01 = (y0 * sxh + x1 * sxw)[:, None]
                off10 = (y1 * sxh + x0 * sxw)[:, None]
                off11 = (y1 * sxh + x1 * sxw)[:, None]
                wx1 = lx[:, None]
                wx0 = 1.0 - wx1
                wy1 = ly[:, None]
                wy0 = 1.0 - wy1
            tap = w_ptr + (ky * K + kx) * C_IN * C_OUT
            for c0 in range(0, C_IN, BLOCK_CI):
                ci = c0 + ci_r
                ci_ok = ci < C_IN
                m = ok[:, None] & ci_ok[None, :]
                base = x_n + (ci * sxc)[None, :]
                if MODE == 1:
                    v00 = tl.load(base + off00, mask=m, other=0.0).to(tl.float32)
                    v01 = tl.load(base + off01, mask=m, other=0.0).to(tl.float32)
                    v10 = tl.load(base + off10, mask=m, other=0.0).to(tl.float32)
                    v11 = tl.load(base + off11, mask=m, other=0.0).to(tl.float32)
                    u = wy0 * (wx0 * v00 + wx1 * v01) + wy1 * (wx0 * v10 + wx1 * v11)
                else:
                    u = tl.load(base + off00, mask=m, other=0.0).to(tl.float32)
                u = _apply_act(u, ACT)
                wt = tl.load(tap + ci[:, None] * C_OUT + co[None, :], mask=ci_ok[:, None] & co_ok[None, :], other=0.0)
                if LOW_PRECISION:
                    # Round up(x) to the input dtype, as the unfused pipeline stores it.
                    if UPCAST_DOT:  # interpreter: exact low-precision values, fp32 products
                        if IS_BF16:
                            u_lp = _round_bf16(u)
                        else:
                            u_lp = u.to(w_ptr.dtype.element_ty).to(tl.float32)
                        acc = tl.dot(u_lp, wt.to(tl.float32), acc, input_precision="ieee")
                    else:
                        acc = tl.dot(u.to(w_ptr.dtype.element_ty), wt, acc)
                else:
                    acc = tl.dot(u, wt, acc, input_precision="ieee")

    acc = _apply_act(acc, ACT)
    if UPCAST_DOT and IS_BF16:
        acc = _round_bf16(acc)  # then the (truncating) interpreter cast is exact
    out = y_ptr + n.to(tl.int64) * syn + (co * syc)[None, :] + (oy * syh + ox * syw)[:, None]
    tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & co_ok[None, :])


if triton is not None:
    # On a GPU the tile shape is tuned once per (channels, k, mode, dtype);
    # the interpreter runs one fixed small configuration instead.
    _upsample_conv_tuned = triton.autotune(
        configs=[
            triton.Config({"BLOCK_P": 64, "BLOCK_CO": 64, "BLOCK_CI": 32}, num_warps=4, num_stages=2),
            triton.Config({"BLOCK_P": 128, "BLOCK_CO": 64, "BLOCK_CI": 32}, num_warps=4, num_stages=2),
            triton.Config({"BLOCK_P": 64, "BLOCK_CO": 128, "BLOCK_CI": 32}, num_warps=8, num_stages=2),
            triton.Config({"BLOCK_P": 128, "BLOCK_CO": 128, "BLOCK_CI": 32}, num_warps=8, num_stages=2),
        ],
        key=["C_IN", "C_OUT", "K", "MODE", "ACT", "LOW_PRECISION"],
    )(_upsample_conv_kernel)


def _check(x: Tensor, weight: Tensor) -> int:
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise InputError(f"x must be a (N, C_in, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(weight, Tensor) or weight.dim() != 4:
        raise InputError("weight must be a (C_out, C_in, k, k) tensor")
    k = weight.shape[-1]
    if weight.shape[-2] != k or k % 2 != 1:
        raise InputError(f"weight must have a square, odd kernel, got {tuple(weight.shape[-2:])}")
    if weight.shape[1] != x.shape[1]:
        raise InputError(f"weight expects {weight.shape[1]} input channels, x has {x.shape[1]}")
    if weight.dtype not in _DTYPES or x.dtype not in (weight.dtype, torch.float32):
        raise InputError(
            "x and weight must share a dtype among float32, bfloat16, float16 (or x float32 with a "
            f"low-precision weight); got {x.dtype}, {weight.dtype}"
        )
    if x.device != weight.device:
        raise InputError(f"x is on {x.device}, weight on {weight.device}")
    return k


#: The GPU tile used when autotuning is off (``tune=False``).
FIXED_GPU_CONFIG = {"BLOCK_P": 64, "BLOCK_CO": 64, "BLOCK_CI": 32, "num_warps": 4, "num_stages": 2}


def upsample_conv_forward(
    x: Tensor,
    weight: Tensor,
    mode: str = "bilinear",
    activation: Optional[str] = None,
    *,
    out: Optional[Tensor] = None,
    tune: bool = True,
) -> Tensor:
    """Launch the fused kernel (no autograd): ``(N, C_in, H, W) -> (N, C_out, 2H, 2W)``.

    ``out``, if given, is written in place (any strides; tests pass a NaN-filled
    tensor so unwritten elements show).  On a GPU the tile shape is autotuned
    once per (channels, k, mode, activation, dtype); ``tune=False`` uses
    :data:`FIXED_GPU_CONFIG` (one compile per variant, e.g. for wide
    correctness sweeps).  Under ``TRITON_INTERPRET=1`` a fixed small tile runs.
    """
    if triton is None:
        raise InputError("the fused upsample-conv kernel needs Triton, which is not installed")
    mode, act = _canonical_mode(mode), _canonical_activation(activation)
    k = _check(x, weight)
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    shape = (n, c_out, 2 * h, 2 * w)
    if out is None:
        out = torch.empty(shape, dtype=weight.dtype, device=x.device)
    elif tuple(out.shape) != shape or out.dtype != weight.dtype or out.device != x.device:
        raise InputError(f"out must be {shape} {weight.dtype} on {x.device}")
    if out.numel() == 0:
        return out
    w_taps = weight.detach().permute(2, 3, 1, 0).contiguous()  # (k, k, C_in, C_out)
    args = (x.detach(), w_taps, out, c_in, h, w, c_out, *x.stride(), *out.stride())
    meta = dict(
        K=k, MODE=_MODE_CODE[mode], ACT=_ACT_CODE[act],
        LOW_PRECISION=weight.dtype != torch.float32, IS_BF16=weight.dtype == torch.bfloat16,
        enable_fp_fusion=True,  # FMA in the interpolation and the dot: only more accurate
    )

    def grid(m):
        return (triton.cdiv(4 * h * w, m["BLOCK_P"]), triton.cdiv(c_out, m["BLOCK_CO"]), n)

    if interpreting() or x.device.type != "cuda":
        # The interpreter's tl.dot mishandles bf16 operands (it multiplies their
        # bit patterns) and its fp32 -> bf16 cast truncates: multiply the exact
        # low-precision values as fp32 instead -- same products, fp32 sums.
        tile = dict(
            BLOCK_P=256,  # few, large tiles: the interpreter pays per operation
            BLOCK_CO=max(16, min(64, triton.next_power_of_2(c_out))),
            BLOCK_CI=max(16, min(32, triton.next_power_of_2(c_in))),
        )
        _upsample_conv_kernel[grid(tile)](*args, **meta, UPCAST_DOT=True, **tile)
    elif tune:
        _upsample_conv_tuned[grid](*args, **meta, UPCAST_DOT=False)
    else:
        _upsample_conv_kernel[grid(FIXED_GPU_CONFIG)](*args, **meta, UPCAST_DOT=False, **FIXED_GPU_CONFIG)
    return out


class UpsampleConvFunction(torch.autograd.Function):
    """Fused ``act(conv_k(act(up2(x))))`` with a reference backward.

    Forward: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, k, k) ->
    (N, C_out, 2H, 2W) by the Triton kernel (the x2 tensor is never stored).
    Backward: the gradients of :func:`upsample_conv_reference` w.r.t. ``x``
    and ``weight``, obtained by recomputing it under ``enable_grad`` (docs/design.md §7
    allows the unfused backward; it costs one extra reference forward).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, mode: str, activation: Optional[str]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.mode, ctx.activation = mode, activation
        return upsample_conv_forward(x, weight, mode, activation)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # Recompute exactly what the kernel computed: explicit dtypes, no autocast.
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            xr = x.detach().requires_grad_(need_x)
            wr = weight.detach().requires_grad_(need_w)
            out = upsample_conv_reference(xr, wr, ctx.mode, ctx.activation)
            wanted = [t for t, need in ((xr, need_x), (wr, need_w)) if need]
            grads = list(torch.autograd.grad(out, wanted, grad_out)) if wanted else []
        grad_x = grads.pop(0) if need_x else None
        grad_w = grads.pop(0) if need_w else None
        return grad_x, grad_w, None, None


def triton_upsample_conv(
    x: Tensor, weight: Tensor, mode: str = "bilinear", activation: Optional[str] = None
) -> Tensor:
    """Differentiable fused upsample + conv (the Triton path of the dispatcher).

    Under ``torch.autocast`` the weight is cast to the autocast dtype first,
    as autocast does for ``F.conv2d`` (the cast is part of the autograd graph,
    so the float32 parameter receives its gradient).
    """
    mode, act = _canonical_mode(mode), _canonical_activation(activation)
    if torch.is_autocast_enabled(x.device.type):
        low = torch.get_autocast_dtype(x.device.type)
        if low in (torch.bfloat16, torch.float16):
            weight = weight.to(low)
            if x.dtype not in (low, torch.float32):
                x = x.to(low)
    _check(x, weight)
    return UpsampleConvFunction.apply(x, weight, mode, act)
