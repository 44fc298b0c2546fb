"""The Triton kernels on CUDA at GPU sizes (``bench/gpu_check.py`` section ``correctness_kernels``).

Relative error = max |error| / max |reference|.

Spectral scoring (``fused_spectral``), fresh random inputs (smooth outputs
like random networks give, and one rough one), shapes up to 4 x 3 x 512^2:

* every fused metric within 1e-5 of the float32 PyTorch reference, and
  within 2 x (the float32 reference's error) + 1e-6 of float64;
* with ``fft_dtype=float64`` the MSE metrics within 1e-6 of float64;
* histogram counts exactly equal to numpy's on the same float32 power values.

x2 upsample + conv (``fused_upsample_conv``) against a float64 reference,
k in {1, 3, 5, 7}, both modes, every activation at k = 3: float32 within
1e-5; bfloat16 within 2 x PyTorch bfloat16's own error + 1e-3; also 40 -> 72
channels, the autotuned path at 128 channels and 64^2, gradients (the
backward is the reference's: 1e-5), ``UpsampleBlock``'s fused path (1e-5)
and bf16 autocast (a bf16 result within 2 x PyTorch's autocast error + 1e-3).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

SPECTRAL_SHAPES = [(6, 3, 40, 56), (6, 1, 33, 47), (6, 2, 80, 80), (6, 3, 256, 256), (4, 3, 512, 512)]
MSE_METRICS = {"psd_db_strip_mse", "psd_db_mse", "nodc_psd_db_strip_mse", "nodc_psd_db_mse"}
MODES = ["bilinear", "nearest"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _spectral_inputs(shape, seed: int, device: torch.device):
    """(y, outputs): a noisy image and B outputs, smooth ones in (0, 1) and the first rough."""
    b, c, h, w = shape
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    y = torch.rand(c, h, w, generator=gen, device=device)
    rough = torch.rand(b, c, h, w, generator=gen, device=device)
    blurred = F.avg_pool2d(F.pad(rough, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    outputs = torch.sigmoid(6 * blurred - 3)
    outputs[0] = rough[0]
    return y, outputs


@pytest.mark.parametrize("index", range(len(SPECTRAL_SHAPES)), ids=["x".join(map(str, s)) for s in SPECTRAL_SHAPES])
def test_spectral_scores_match_references(index, target, rel):
    from isnas_fast.kernels import fused_spectral as ks
    from isnas_fast.kernels import spectral_reference as ref

    target.smallest_case_only(index == 0)
    shape = target.size(SPECTRAL_SHAPES[index], (2, 3, 40, 56))
    y, o = _spectral_inputs(shape, 1000 + index, target.device)
    fused = list(ks.FUSED_METRICS)
    fast = ks.triton_spectral_scores(y, o, fused)
    r32 = ref.spectral_scores_reference(y, o, fused, dtype=torch.float32)
    r64 = ref.spectral_scores_reference(y, o, fused)
    for k, name in enumerate(fused):
        e32, e64, e_ref = rel(fast[:, k], r32[:, k]), rel(fast[:, k], r64[:, k]), rel(r32[:, k], r64[:, k])
        assert e32 <= 1e-5, f"{name}: {e32:.3g} from the float32 reference"
        assert e64 <= 2 * e_ref + 1e-6, f"{name}: {e64:.3g} from float64 (float32 reference: {e_ref:.3g})"
    mse = [n for n in fused if n in MSE_METRICS]
    fast64 = ks.triton_spectral_scores(y, o, mse, fft_dtype=torch.float64)
    e_fft64 = rel(fast64, r64[:, [fused.index(n) for n in mse]])
    assert e_fft64 <= 1e-6, f"fft_dtype=float64: {e_fft64:.3g} from float64"


def test_histogram_counts_exact(target):
    from isnas_fast.kernels import fused_spectral as ks
    from isnas_fast.kernels import spectral_reference as ref

    b, c, h, w = target.size((4, 3, 256, 256), (2, 3, 40, 56))
    _, o = _spectral_inputs((b, c, h, w), 77, target.device)
    o_ri = torch.view_as_real(torch.fft.rfft2(o, norm="forward")).contiguous()
    table = ks.strip_intervals(h, w, target.device)
    zeros = torch.zeros(b, c, device=target.device)
    stats, split = ks._launch_stats(o_ri, o_ri[0], table, w, zeros, zeros[0], need_mse=False, need_range=True)
    counts, _ = ks._launch_strip_counts(o_ri, table, w, stats[..., 2].amin(1), stats[..., 3].amax(1), split)
    counts = counts.sum(1)[:, : ref.HIST_BINS].cpu()
    power = o_ri[..., 0].square() + o_ri[..., 1].square()
    strip = torch.fft.fftshift(ref.full_grid(power, h, w), dim=(-2, -1))[..., ref.strip_mask(h, w).to(target.device)]
    values = strip.reshape(b, -1).double().cpu().numpy()
    expected = torch.tensor(np.stack([np.histogram(v, bins=ref.HIST_BINS)[0] for v in values]))
    assert torch.equal(counts, expected), f"{int((counts != expected).sum())} bins differ from numpy"


def _upsample_cases():
    """(n, c_in, c_out, h, w, k, mode, act, dtype, tune, smallest): every (k, mode, dtype) with
    leaky_relu and every activation at k = 3 (each variant is a separate compile), then bigger ones."""
    cases = []
    for k in (1, 3, 5, 7):
        for mode in MODES:
            for act in ([None, "relu", "leaky_relu"] if k == 3 else ["leaky_relu"]):
                for dtype in DTYPES:
                    cases.append((1, 8, 8, 5, 7, k, mode, act, dtype, False, k == 3 and act == "leaky_relu"))
    for mode in MODES:
        for dtype in DTYPES:
            cases.append((2, 40, 72, 9, 13, 3, mode, "leaky_relu", dtype, False, False))
            cases.append((1, 128, 128, 64, 64, 3, mode, "leaky_relu", dtype, True, False))  # autotuned
    return cases


UPSAMPLE_CASES = _upsample_cases()


@pytest.mark.parametrize("case", UPSAMPLE_CASES,
                         ids=[f"N{n}-{ci}to{co}-{h}x{w}-k{k}-{m}-{a}-{d}{'-tuned' if t else ''}"
                              for n, ci, co, h, w, k, m, a, d, t, _ in UPSAMPLE_CASES])
def test_upsample_conv_matches_float64(case, target, rel, no_tf32):
    from isnas_fast.kernels.fused_upsample_conv import upsample_conv_forward, upsample_conv_reference

    n, c_in, c_out, h, w, k, mode, act, dname, tune, smallest = case
    target.smallest_case_only(smallest)
    dtype, dev = DTYPES[dname], target.device
    gen = torch.Generator(device=dev)
    gen.manual_seed(4242 + UPSAMPLE_CASES.index(case))
    x = torch.randn(n, c_in, h, w, generator=gen, device=dev).to(dtype)
    wt = (torch.randn(c_out, c_in, k, k, generator=gen, device=dev) / (c_in * k * k) ** 0.5).to(dtype)
    out = torch.full((n, c_out, 2 * h, 2 * w), float("nan"), dtype=dtype, device=dev)  # unwritten shows
    upsample_conv_forward(x, wt, mode, act, out=out, tune=tune)
    want = upsample_conv_reference(x.double(), wt.double(), mode, act)
    with no_tf32():
        plain = upsample_conv_reference(x, wt, mode, act)  # PyTorch in the same dtype
    err, err_torch = rel(out, want), rel(plain, want)
    bound = 1e-5 if dtype == torch.float32 else 2 * err_torch + 1e-3
    assert err <= bound, f"relative error {err:.3g} > {bound:.3g} (PyTorch in {dname}: {err_torch:.3g})"


def test_upsample_conv_gradients(target, rel, no_tf32):
    from isnas_fast import kernels

    gen = torch.Generator(device=target.device)
    gen.manual_seed(7)
    x = torch.randn(2, 8, 5, 4, generator=gen, device=target.device, requires_grad=True)
    wt = torch.randn(12, 8, 3, 3, generator=gen, device=target.device, requires_grad=True)
    grad_out = torch.randn(2, 12, 10, 8, generator=gen, device=target.device)
    grads = {}
    with no_tf32():
        for backend in ("triton", "reference"):
            y = kernels.upsample_conv(x, wt, "bilinear", "relu", backend=backend)
            grads[backend] = torch.autograd.grad(y, (x, wt), grad_out)
    for name, a, b in zip(("x", "weight"), grads["triton"], grads["reference"]):
        assert rel(a, b) <= 1e-5, f"gradient of {name}: {rel(a, b):.3g}"


def test_upsample_block_fused_path(target, rel, no_tf32, kernel_backend):
    from isnas_fast.genotype import decode_upsample
    from isnas_fast.network import UpsampleBlock

    kernel_backend("triton")
    gen = torch.Generator(device=target.device)
    gen.manual_seed(8)
    block = UpsampleBlock(decode_upsample(4), 16, 16).to(target.device)
    z = torch.rand(1, 16, 8, 8, generator=gen, device=target.device)
    with torch.no_grad(), no_tf32():
        err = rel(block(z), block.ops(z))
    assert err <= 1e-5, f"UpsampleBlock fused vs its ops: {err:.3g}"


def test_autocast_bf16(target, rel, no_tf32):
    """The DIP loop's bf16 mode: float32 input and weight under autocast."""
    from isnas_fast import kernels
    from isnas_fast.kernels.fused_upsample_conv import upsample_conv_reference

    gen = torch.Generator(device=target.device)
    gen.manual_seed(9)
    x = torch.randn(1, 32, 16, 16, generator=gen, device=target.device)
    wt = torch.randn(32, 32, 3, 3, generator=gen, device=target.device) / 17
    with no_tf32():
        exact = upsample_conv_reference(x.double(), wt.double(), "bilinear", "leaky_relu")
    with torch.autocast(target.device.type, dtype=torch.bfloat16):
        fused = kernels.upsample_conv(x, wt, "bilinear", "leaky_relu", backend="triton")
        plain = upsample_conv_reference(x, wt, "bilinear", "leaky_relu")
    assert fused.dtype == torch.bfloat16
    err, err_torch = rel(fused, exact), rel(plain, exact)
    assert err <= 2 * err_torch + 1e-3, f"autocast: {err:.3g} (PyTorch's autocast: {err_torch:.3g})"
