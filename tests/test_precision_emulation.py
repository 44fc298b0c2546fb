"""bench/precision_emulation.py: its TF32/bf16 rounding is what it claims to be."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "precision_emulation.py"


@pytest.fixture(scope="module")
def pe():
    spec = importlib.util.spec_from_file_location("precision_emulation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["precision_emulation"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("precision_emulation", None)


def _values(seed: int, n: int = 200_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g) * 8)
    return torch.cat([x, -x[:10], torch.tensor([0.0, -0.0, 1.0, 2.0 ** -130, 3.0e38])])


def test_seven_bits_is_torch_bf16_rounding(pe):
    # round to nearest even, ties included: 1 + 2^-8 (a tie) goes down to 1, 1 + 3 * 2^-8 up to 1 + 2^-6
    x = torch.cat([_values(0), torch.tensor([1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, -(1 + 2.0 ** -8)])])
    assert torch.equal(pe.round_mantissa(x, 7), x.to(torch.bfloat16).float())


def test_tf32_rounding_error_bounds(pe):
    x = _values(1)
    x = x[x.abs() > 2.0 ** -126]  # normal numbers: relative bounds hold
    for truncate, bound in ((False, 2.0 ** -11), (True, 2.0 ** -10)):
        r = pe.round_mantissa(x, 10, truncate)
        rel = ((r - x).abs() / x.abs()).max().item()
        assert rel <= bound and rel > bound / 2  # at most half an ulp (a whole one truncated), and it does round
        low = r.view(torch.int32) & ((1 << 13) - 1)
        assert int(low.abs().max()) == 0  # 13 low mantissa bits cleared: 10 left
        assert torch.equal(pe.round_mantissa(r, 10, truncate), r)  # idempotent
    assert bool((pe.round_mantissa(x, 10, True).abs() <= x.abs()).all())  # truncation toward zero


def test_tf32_conv_rounds_operands_and_incoming_gradient(pe):
    # forward: conv of rounded input and weight plus the float32 bias; backward:
    # the two backward convolutions on the rounded gradient and rounded operands
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1, padding_mode="reflect")
    ref = nn.Conv2d(6, 5, 3, padding=1, padding_mode="reflect")
    ref.load_state_dict(conv.state_dict())
    pe.emulate_tf32(conv)
    x = torch.randn(2, 6, 9, 9, requires_grad=True)
    g = torch.randn(2, 5, 9, 9)
    y = conv(x)
    y.backward(g)

    def r(t):
        return pe.round_mantissa(t, 10)

    xr = r(x.detach())
    xp = F.pad(xr, (1, 1, 1, 1), mode="reflect")
    want = F.conv2d(xp, r(ref.weight.detach()), ref.bias.detach())
    assert torch.allclose(y, want, rtol=1e-6, atol=1e-6)
    assert not torch.equal(y, ref(x))  # the rounding shows
    gw = torch.nn.grad.conv2d_weight(xp, ref.weight.shape, r(g))
    gxp = torch.nn.grad.conv2d_input(xp.shape, r(ref.weight.detach()), r(g))
    xx = xr.clone().requires_grad_(True)
    F.pad(xx, (1, 1, 1, 1), mode="reflect").backward(gxp)  # the reflection pad's backward folds the border
    assert torch.allclose(conv.weight.grad, gw, rtol=1e-5, atol=1e-5)
    assert torch.allclose(x.grad, xx.grad, rtol=1e-5, atol=1e-5)
    assert torch.allclose(conv.bias.grad, g.sum((0, 2, 3)), rtol=1e-5, atol=1e-5)


def test_ulp_nudge_moves_every_pixel_one_ulp(pe):
    x = torch.rand(1, 3, 8, 8)
    y = pe.ulp_nudge(x, 3)
    gap = (y.view(torch.int32) - x.view(torch.int32)).abs()
    assert int(gap.max()) == 1 and int(gap.min()) == 1  # inside (0, 1): exactly one ulp each
    assert torch.equal(y, pe.ulp_nudge(x, 3)) and not torch.equal(y, pe.ulp_nudge(x, 4))


def test_study_smoke(pe):
    # the seed study's plumbing on a few steps (the real run: python bench/precision_emulation.py --study)
    out = pe.study(["fp32", "tf32", "bf16"], [0, 1], size=64, width=16, steps=4, progress=False)
    for mode in ("tf32", "bf16"):
        peak = out["minus_fp32"][mode]["peak"]
        assert len(peak["differences_db"]) == 2 and all(math.isfinite(d) for d in peak["differences_db"])
        assert peak["ci95_db"][0] <= peak["mean_db"] <= peak["ci95_db"][1]
    assert all(math.isfinite(p) for p in out["runs"]["fp32"]["peak"])
