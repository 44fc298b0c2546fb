"""PSNR, SSIM and the BT.601 Y channel against independent NumPy/SciPy references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from isnas_fast.errors import InputError
from isnas_fast.quality import psnr, rgb_to_y, ssim


def _pair(b=2, c=3, h=37, w=53, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    ref = (0.5 + 0.4 * torch.sin(5 * xx + 3 * yy)).expand(b, c, h, w).clone()
    ref += 0.05 * torch.rand(ref.shape, generator=g)
    ref = ref.clamp(0, 1)
    x = (ref + noise * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    return x, ref


def _psnr_numpy(x, ref, data_range=1.0):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    mse = ((x - ref) ** 2).reshape(len(x), -1).mean(axis=1)
    return 10 * np.log10(data_range**2 / mse)


def _ssim_numpy(x, ref, data_range=1.0):
    """skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False), written out with scipy: reflect-padded
    Gaussian filtering (truncate 3.5 → 11×11), crop 5 px per border, mean."""
    k1, k2, pad = 0.01, 0.03, 5
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    out = []
    for xi, ri in zip(np.asarray(x, np.float64), np.asarray(ref, np.float64)):
        per_channel = []
        for a, b in zip(xi, ri):
            filt = lambda t: gaussian_filter(t, sigma=1.5, truncate=3.5, mode="reflect")
            ux, uy = filt(a), filt(b)
            vx = filt(a * a) - ux * ux
            vy = filt(b * b) - uy * uy
            vxy = filt(a * b) - ux * uy
            s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
            per_channel.append(s[pad:-pad, pad:-pad].mean())
        out.append(np.mean(per_channel))
    return np.array(out)


def test_psnr_matches_numpy():
    x, ref = _pair()
    got = psnr(x, ref)
    assert got.shape == (2,)
    np.testing.assert_allclose(got.numpy(), _psnr_numpy(x.numpy(), ref.numpy()), rtol=1e-10)
    assert 15 < got.min() < got.max() < 30


def test_psnr_data_range_and_known_value():
    ref = torch.zeros(1, 1, 16, 16)
    x = torch.full_like(ref, 0.1)  # MSE 0.01 → 20 dB
    assert psnr(x, ref).item() == pytest.approx(20.0, abs=1e-5)
    assert psnr(x * 255, ref * 255, data_range=255).item() == pytest.approx(20.0, abs=1e-5)
    assert math.isinf(psnr(ref, ref).item())


def test_rgb_to_y_numbers():
    x = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    x = x.T.reshape(1, 3, 1, 5)
    y = rgb_to_y(x).flatten().tolist()
    expected = [16 / 255, 235 / 255, (219 * 0.299 + 16) / 255, (219 * 0.587 + 16) / 255,
                (219 * 0.114 + 16) / 255]
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)
    assert rgb_to_y(x).shape == (1, 1, 1, 5)
    grey = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)
    np.testing.assert_allclose(rgb_to_y(grey).numpy(), rgb_to_y(grey.expand(1, 3, 2, 2)).numpy())


def test_psnr_y_channel_matches_numpy():
    x, ref = _pair()
    xn, rn = x.double().numpy(), ref.double().numpy()
    w = np.array([0.299, 0.587, 0.114])[None, :, None, None]
    yx = (219 * (xn * w).sum(1, keepdims=True) + 16) / 255
    yr = (219 * (rn * w).sum(1, keepdims=True) + 16) / 255
    got = psnr(x, ref, y_channel=True)
    np.testing.assert_allclose(got.numpy(), _psnr_numpy(yx, yr), rtol=1e-10)
    assert not np.allclose(got.numpy(), psnr(x, ref).numpy())


@pytest.mark.parametrize("shape", [(2, 3, 37, 53), (1, 1, 11, 11), (1, 3, 64, 40)])
def test_ssim_matches_reference(shape):
    x, ref = _pair(*shape, noise=0.08, seed=sum(shape))
    got = ssim(x, ref)
    want = _ssim_numpy(x.numpy(), ref.numpy())
    assert got.shape == (shape[0],) and np.isfinite(want).all()
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-5)
    assert (got < 0.99).all()


def test_ssim_data_range():
    x, ref = _pair(1, 3, 32, 32)
    np.testing.assert_allclose(ssim(x * 255, ref * 255, data_range=255).numpy(),
                               ssim(x, ref).numpy(), atol=1e-9)


def test_ssim_identity_and_symmetry():
    x, ref = _pair()
    np.testing.assert_allclose(ssim(ref, ref).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(ssim(x, ref).numpy(), ssim(ref, x).numpy(), atol=1e-12)


@pytest.mark.parametrize("fn", [psnr, ssim])
def test_bad_inputs(fn):
    x, ref = _pair()
    with pytest.raises(InputError, match="shapes differ"):
        fn(x, ref[..., :-1])
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        fn(x[0], ref[0])
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        fn(bad, ref)


def test_ssim_too_small():
    x = torch.rand(1, 1, 10, 40)
    with pytest.raises(InputError, match="11x11"):
        ssim(x, x)
