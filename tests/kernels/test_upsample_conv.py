"""Fused x2 upsample + conv (kernels/fused_upsample_conv.py) against its reference (docs/design.md §3.2, §7).

Tolerances (relative = max |error| / max |float32 reference|):

* float32: <= 1e-5 against ``upsample_conv_reference`` in float32 (exact
  float32 products in the kernel, no TF32; measured ~1e-7 .. 1e-6).
* bfloat16 (flash-attention rule): the kernel's error against the float32
  reference evaluated on the same bf16 values is at most twice the error of
  plain PyTorch in bf16 (F.interpolate + F.conv2d in bf16), plus 1e-3.

Every kernel call writes into an output pre-filled with NaN, so an element
the kernel forgets to write fails the comparison.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from isnas_fast import kernels  # noqa: E402
from isnas_fast.errors import InputError  # noqa: E402
from isnas_fast.genotype import decode_upsample  # noqa: E402
from isnas_fast.kernels.fused_upsample_conv import (  # noqa: E402
    UpsampleConvFunction,
    upsample_conv_forward,
    upsample_conv_reference,
)
from isnas_fast.network import UpsampleBlock  # noqa: E402

FP32_REL = 1e-5
BF16_ATOL = 1e-3
ACTS = [None, "relu", "leaky_relu"]


def _inputs(n, c_in, c_out, h, w, k, gen, dtype, device):
    x = torch.randn(n, c_in, h, w, generator=gen)
    weight = torch.randn(c_out, c_in, k, k, generator=gen) / (c_in * k * k) ** 0.5
    return x.to(device=device, dtype=dtype), weight.to(device=device, dtype=dtype)


def _fused(x, weight, mode, act, out_layout=None):
    n, _, h, w = x.shape
    out = torch.full((n, weight.shape[0], 2 * h, 2 * w), float("nan"), dtype=x.dtype, device=x.device)
    if out_layout is not None:
        out = out.contiguous(memory_format=out_layout)
    result = upsample_conv_forward(x, weight, mode, act, out=out)
    assert result is out
    return out


def _check(x, weight, mode, act, assert_rel, rel_err, what, out_layout=None):
    got = _fused(x, weight, mode, act, out_layout)
    want = upsample_conv_reference(x.float(), weight.float(), mode, act)
    if x.dtype == torch.float32:
        assert_rel(got, want, FP32_REL, what)
    else:
        plain = upsample_conv_reference(x, weight, mode, act)  # PyTorch in bf16
        bound = 2 * rel_err(plain, want) + BF16_ATOL
        assert_rel(got, want, bound, f"{what} (bf16 bound = 2 x torch bf16 error + {BF16_ATOL})")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("act", ACTS, ids=["none", "relu", "leaky"])
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_matches_reference(mode, k, act, dtype, gen, device, assert_rel, rel_err):
    # 5 x 7 -> 10 x 14 = 140 output pixels: not a multiple of any tile.
    x, weight = _inputs(1, 8, 8, 5, 7, k, gen, dtype, device)
    _check(x, weight, mode, act, assert_rel, rel_err, f"{mode} k={k} act={act} {dtype}")


@pytest.mark.parametrize(
    "mode,dtype",
    [("bilinear", torch.float32), ("nearest", torch.float32), ("bilinear", torch.bfloat16)],
    ids=["bilinear-fp32", "nearest-fp32", "bilinear-bf16"],
)
def test_awkward_shapes(mode, dtype, gen, device, assert_rel, rel_err):
    """Two pixel tiles (10 x 26 = 260 outputs), two input-channel blocks
    (40 > 32), two output-channel tiles (72 > 64), non-square."""
    x, weight = _inputs(1, 40, 72, 5, 13, 3, gen, dtype, device)
    _check(x, weight, mode, "leaky_relu", assert_rel, rel_err, f"{mode} 40->72 5x13 {dtype}")


def test_strided_input_and_output(gen, device, assert_rel, rel_err):
    """channels_last input, a sliced (non-contiguous) input, channels_last output."""
    x, weight = _inputs(2, 16, 16, 6, 5, 3, gen, torch.float32, device)
    _check(x.contiguous(memory_format=torch.channels_last), weight, "bilinear", "relu",
           assert_rel, rel_err, "channels_last", out_layout=torch.channels_last)
    wide, _ = _inputs(2, 16, 16, 6, 11, 3, gen, torch.float32, device)
    _check(wide[..., 2:7], weight, "nearest", None, assert_rel, rel_err, "sliced input")


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_gradients_match_reference(mode, gen, device, assert_rel):
    x, weight = _inputs(2, 8, 12, 5, 4, 3, gen, torch.float32, device)
    grad_out = torch.randn(2, 12, 10, 8, generator=gen).to(device)
    results = []
    for be in ("triton", "reference"):
        xr, wr = x.clone().requires_grad_(), weight.clone().requires_grad_()
        y = kernels.upsample_conv(xr, wr, mode, "leaky_relu", backend=be)
        y.backward(grad_out)
        results.append((y.detach(), xr.grad, wr.grad))
    for got, want, what in zip(results[0], results[1], ("output", "grad x", "grad weight")):
        assert_rel(got, want, FP32_REL, what)
    # Only one input requiring grad.
    xr = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(UpsampleConvFunction.apply(xr, weight, mode, "relu"), xr, grad_out)
    xr2 = x.clone().requires_grad_()
    (gx2,) = torch.autograd.grad(upsample_conv_reference(xr2, weight, mode, "relu"), xr2, grad_out)
    assert_rel(gx, gx2, FP32_REL, "grad x only")


@pytest.mark.parametrize("u", [4, 134, 17])  # bilinear conv3 relu; nearest conv5 leaky; bilinear trans_conv
def test_upsample_block_uses_fused_kernel(u, gen, device, monkeypatch):
    cell = decode_upsample(u)
    block = UpsampleBlock(cell, 16, 16).to(device)
    keys = set(block.state_dict())
    assert all(key.startswith("ops.") for key in keys)
    fusable = cell.primitive in ("bilinear", "nearest") and cell.conv == "conv" and not cell.conv_first
    assert (block._fused_conv is not None) == fusable

    calls = []
    real = kernels.upsample_conv
    monkeypatch.setattr(kernels, "upsample_conv", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    monkeypatch.setenv("ISNAS_FAST_BACKEND", "triton")
    x = torch.rand(2, 16, 4, 6, generator=gen).to(device)
    with torch.no_grad():
        got = block(x)
        want = block.ops(x)
    assert len(calls) == int(fusable)
    assert torch.allclose(got, want, rtol=FP32_REL, atol=FP32_REL * want.abs().max().item())
    monkeypatch.setenv("ISNAS_FAST_BACKEND", "reference")
    with torch.no_grad():
        block(x)
    assert len(calls) == int(fusable)  # reference backend: plain ops
    assert set(block.state_dict()) == keys


def test_autocast_bf16(gen, device, assert_rel, rel_err):
    """Under autocast (how the DIP loop runs in bf16) a float32 cell input and
    float32 weight give what autocast's F.conv2d gives: bf16 products, bf16 out,
    gradients reaching the float32 weight."""
    x, weight = _inputs(2, 8, 8, 5, 7, 3, gen, torch.float32, device)
    want = upsample_conv_reference(x, weight, "bilinear", "leaky_relu")  # float32, no autocast
    grads = []
    for be in ("triton", "reference"):
        xr, wr = x.clone().requires_grad_(), weight.clone().requires_grad_()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            y = kernels.upsample_conv(xr, wr, "bilinear", "leaky_relu", backend=be)
        assert y.dtype == torch.bfloat16
        y.float().square().sum().backward()
        assert xr.grad.dtype == wr.grad.dtype == torch.float32
        grads.append((y, xr.grad, wr.grad))
    (got, gx, gw), (plain, gx_ref, gw_ref) = grads
    assert_rel(got, want, 2 * rel_err(plain, want) + BF16_ATOL, "autocast output")
    assert_rel(gx, gx_ref, 2e-2, "autocast grad x")  # both bf16-precision gradients
    assert_rel(gw, gw_ref, 2e-2, "autocast grad weight")


def test_rejects_bad_arguments(device):
    x = torch.rand(1, 4, 3, 3, device=device)
    w = torch.rand(4, 4, 3, 3, device=device)
    with pytest.raises(InputError, match="mode"):
        upsample_conv_forward(x, w, "bicubic")
    with pytest.raises(InputError, match="activation"):
        upsample_conv_forward(x, w, "bilinear", "gelu")
    with pytest.raises(InputError, match="odd"):
        upsample_conv_forward(x, torch.rand(4, 4, 2, 2, device=device))
    with pytest.raises(InputError, match="channels"):
        upsample_conv_forward(x, torch.rand(4, 5, 3, 3, device=device))
    with pytest.raises(InputError, match="dtype"):
        upsample_conv_forward(x, w.double())
    with pytest.raises(InputError, match="dtype"):
        upsample_conv_forward(x.bfloat16(), w)  # low-precision x with a float32 weight
    with pytest.raises(InputError, match="out must be"):
        upsample_conv_forward(x, w, out=torch.empty(1, 4, 6, 7, device=device))
