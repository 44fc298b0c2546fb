"""Noise-level estimation (isnas_fast.noise) against independent implementations and known sigmas."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from isnas_fast.errors import InputError
from isnas_fast.noise import default_patch, estimate_noise, mad_sigma, pca_sigma
from isnas_fast.tasks import Denoise


def _scene(h=128, w=128, c=3, seed=0, lo=0.2, hi=0.8):
    """A smooth image with edges (blobs and a gradient) in [lo, hi], (1, C, H, W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((c, h, w))
    for k in range(c):
        base = 0.5 + 0.3 * np.sin(3 * xx + k) * np.cos(2 * yy)
        for _ in range(4):
            cy, cx, r = rng.uniform(0, 1, 3)
            base += 0.3 * ((yy - cy) ** 2 + (xx - cx) ** 2 < (0.1 + 0.2 * r) ** 2)
        img[k] = base
    img = (img - img.min()) / (img.max() - img.min())
    return torch.from_numpy(lo + (hi - lo) * img).float()[None]


def _noisy(x, sigma, seed=1):
    y = Denoise(sigma).corrupt(x, seed=seed).y
    return (y * 255).round() / 255  # an 8-bit file, as users have


def _chen_reference(x: np.ndarray, p: int = 8) -> float:
    """Chen, Zhu and Heng's estimator transcribed from the authors' MATLAB (every patch, stride 1)."""
    c, h, w = x.shape
    cols = np.stack([x[:, i:i + p, j:j + p].reshape(-1) for i in range(h - p + 1) for j in range(w - p + 1)], 1)
    mu = cols.mean(axis=1, keepdims=True)
    cov = (cols - mu) @ (cols - mu).T / cols.shape[1]
    eig = np.sort(np.linalg.eigvals(cov).real)
    for count in range(eig.size, 0, -1):
        mean = eig[:count].mean()
        if (eig[:count] > mean).sum() == (eig[:count] < mean).sum():
            break
    return float(np.sqrt(mean)) * 255


def test_mad_matches_scikit_image():
    restoration = pytest.importorskip("skimage.restoration", reason="scikit-image is the independent reference")
    pytest.importorskip("pywt", reason="scikit-image's estimate_sigma needs PyWavelets")
    for seed, sigma in ((0, 10), (1, 25), (2, 50)):
        y = _noisy(_scene(96, 80, seed=seed), sigma, seed)
        ours = mad_sigma(y).sigma
        ref = restoration.estimate_sigma(y[0].numpy().transpose(1, 2, 0).astype(np.float64), channel_axis=-1,
                                         average_sigmas=True) * 255
        assert ours == pytest.approx(ref, rel=1e-3), (seed, sigma)


def test_pca_without_refinements_is_the_authors_algorithm():
    x = _scene(48, 48, c=1, lo=0.35, hi=0.65)
    y = _noisy(x, 8)
    ref = _chen_reference(y[0].double().numpy())
    plain = pca_sigma(y, max_iterations=0)
    assert plain.patches == 41 * 41
    assert plain.sigma == pytest.approx(ref, rel=1e-6)


def test_weak_texture_selection_keeps_flat_patches_and_drops_edges():
    flat = _noisy(torch.full((1, 1, 64, 64), 0.5), 20)
    est = pca_sigma(flat)
    assert est.patches > 0.95 * 57 * 57  # noise alone is weak texture
    assert est.sigma == pytest.approx(20, rel=0.05)
    # black and white squares: edges left out, every pixel's noise clipped by half
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    squares = (((yy // 16 + xx // 16) % 2).float())[None, None]
    est = pca_sigma(_noisy(squares, 10))
    assert abs(est.sigma / 10 - 1) < 0.2 and est.patches < 57 * 57


@pytest.mark.parametrize("sigma,bound", [(5, 0.25), (15, 0.08), (25, 0.08), (50, 0.08)])
def test_pca_recovers_known_sigma(sigma, bound):
    # at sigma 5 the scene's sharp edges are comparable to the noise and push the estimate up
    est = [estimate_noise(_noisy(_scene(seed=s), sigma, seed=s)).sigma for s in range(3)]
    assert all(np.isfinite(est))
    assert np.max(np.abs(np.array(est) / sigma - 1)) < bound, est


def test_clipping_correction_on_a_dark_image():
    x = _scene(96, 96, lo=0.0, hi=0.35)
    y = _noisy(x, 50)
    corrected = pca_sigma(y).sigma
    plain = pca_sigma(y, max_iterations=0).sigma  # the same patches, clipping ignored
    assert plain < 0.8 * 50, plain  # clipping pulls the plain estimate well down
    assert abs(corrected / 50 - 1) < 0.3 and corrected > plain, (corrected, plain)


def test_estimates_are_deterministic_and_checked():
    y = _noisy(_scene(64, 64), 20)
    assert pca_sigma(y) == pca_sigma(y.clone())
    with pytest.raises(InputError, match="method"):
        estimate_noise(y, "bogus")
    with pytest.raises(InputError, match="NaN"):
        estimate_noise(y * float("nan"))
    with pytest.raises(InputError, match="at least 13x13"):  # 5 x 5 x 3 patches: at least 75 of them
        estimate_noise(y[..., :12, :40])
    assert np.isfinite(estimate_noise(y[..., :13, :13]).sigma)


def test_colour_patches_hold_about_64_values():
    assert default_patch(1) == 8 and default_patch(3) == 5
    flat = [_noisy(torch.full((1, 3, 64, 64), 0.5), 25, seed=s) for s in range(4)]
    default = np.mean([pca_sigma(y).sigma / 25 - 1 for y in flat])
    assert abs(default) < 0.02, default


def test_widening_to_the_noise_bulk_removes_the_equal_counts_rules_low_reading():
    """On noise alone the sample covariance's eigenvalues spread (Marchenko-Pastur) and the
    authors' equal-counts rule stops inside the spread: 8 x 8 x 3 patches of a 64 px colour crop
    (192 values, about 3200 patches) read sigma several per cent low; widened to the bulk's upper
    edge the same patches read it within 1 % on average (unclipped noise, grey 0.5, 6 seeds)."""
    from isnas_fast.noise import _chen_variance, _patches
    rule, widened = [], []
    for seed in range(6):
        x = 0.5 + np.random.default_rng(seed).normal(0, 25 / 255, (3, 64, 64))
        rows, _ = _patches(x, 8, 20000)
        rule.append(np.sqrt(_chen_variance(rows)) * 255 / 25 - 1)
        widened.append(np.sqrt(_chen_variance(rows, widen=True)) * 255 / 25 - 1)
        assert np.isfinite(widened[-1])
    assert np.mean(rule) < -0.02, rule
    assert abs(np.mean(widened)) < 0.01, widened
    # and through the estimator, 8-bit and clipped as a file is
    large = np.mean([pca_sigma(_noisy(torch.full((1, 3, 64, 64), 0.5), 25, seed=s), patch=8).sigma / 25 - 1
                     for s in range(4)])
    assert abs(large) < 0.015, large


def test_clipped_share_read_at_a_patchs_noisy_mean_is_unbiased():
    """Monte Carlo of flat patches on black and white, clipped: the share of the noise variance
    that clipping leaves, read off the table at each patch's own mean, averages to the patches'
    actual share; read at the mean uncorrected it is about 10 % too high for 25 values."""
    from isnas_fast.noise import _clipped_channel_share
    rng = np.random.default_rng(0)
    for level, sigma, n in ((0.0, 25, 25), (1.0, 50, 25), (0.0, 10, 64)):
        s = sigma / 255
        y = np.clip(level + rng.normal(0, s, (20000, n)), 0, 1)
        actual = y.var(axis=1, ddof=1).mean() / s ** 2
        means = y.mean(axis=1, keepdims=True)
        corrected = _clipped_channel_share(means, s, n).mean()
        uncorrected = _clipped_channel_share(means, s).mean()
        assert abs(corrected / actual - 1) < 0.015, (level, sigma, corrected, actual)
        assert uncorrected / actual - 1 > 0.05, (level, sigma, uncorrected, actual)


@pytest.mark.parametrize("channels,level", [(1, 0.0), (3, 1.0)])
def test_flat_black_or_white_reads_sigma(channels, level):
    """Half of every pixel's noise is clipped away on a flat black or white image; the corrected
    estimate still reads sigma within 4 % (mean of 3 seeds, 96 px)."""
    for sigma in (25, 50):
        est = [pca_sigma(_noisy(torch.full((1, channels, 96, 96), level), sigma, seed=s)).sigma / sigma - 1
               for s in range(3)]
        assert abs(np.mean(est)) < 0.04, (sigma, est)


@pytest.mark.parametrize("levels", [(0.9, 0.3, 0.05), (1.0, 0.5, 0.0)])
def test_colour_flat_with_channels_at_different_levels_reads_sigma(levels):
    """Clipping leaves each channel of a colour image its own share of the noise (little near black
    or white, all of it at mid-grey); the estimate still reads sigma within 3 % (mean of 3 seeds,
    96 px).  A pooled correction reads these 4-28 % low: the equal-counts rule lands on the
    weakest channel's eigenvalues."""
    base = torch.tensor(levels, dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, 96, 96)
    for sigma in (25, 50, 75):
        est = [pca_sigma(_noisy(base, sigma, seed=s)).sigma / sigma - 1 for s in range(3)]
        assert abs(np.mean(est)) < 0.03, (sigma, est)
