"""Tasks (docs/design.md §6): corruption statistics, the Lanczos-2 operator, losses, resizing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from isnas_fast.errors import InputError
from isnas_fast.tasks import (
    Denoise,
    Inpaint,
    Observation,
    SuperResolve,
    lanczos2_downsample,
    lanczos2_kernel,
    make_task,
)


def _image(h=64, w=96, c=3, seed=0):
    """A smooth-ish image in (0, 1): a gradient plus a little texture."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * torch.sin(6 * xx * yy)][:c])
    return (base + 0.05 * torch.rand((c, h, w), generator=g)).clamp(0, 1)[None]


# ---------------------------------------------------------------- denoise

def test_denoise_residual_statistics():
    sigma = 25.0
    x = torch.full((1, 3, 128, 128), 0.5)  # mid-grey: clipping at ±5.1σ is negligible
    obs = Denoise(sigma).corrupt(x, seed=3)
    r = (obs.y - x).double().flatten()
    n = r.numel()
    s = sigma / 255
    assert obs.y.shape == x.shape and obs.y.dtype == torch.float32
    assert obs.mask is None
    # std of the sample std ≈ s/√(2n); mean ≈ s/√n: 5 standard errors each
    assert abs(r.std().item() - s) < 5 * s / math.sqrt(2 * n)
    assert abs(r.mean().item()) < 5 * s / math.sqrt(n)
    assert 0.0 <= obs.y.min() and obs.y.max() <= 1.0


def test_denoise_clips_to_unit_range():
    x = torch.zeros(1, 1, 64, 64)
    y = Denoise(50).corrupt(x).y
    assert y.min() == 0.0 and y.max() <= 1.0
    assert (y == 0).float().mean() > 0.4  # about half of the noise is negative


def test_denoise_seeded():
    x = _image()
    a, b = Denoise(25).corrupt(x, seed=7).y, Denoise(25).corrupt(x, seed=7).y
    c = Denoise(25).corrupt(x, seed=8).y
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a - c).abs().mean() > 0.05


# ---------------------------------------------------------------- inpaint

@pytest.mark.parametrize("p", [10.0, 50.0, 83.0])
def test_inpaint_fraction_missing(p):
    x = _image(128, 128)
    obs = Inpaint(p).corrupt(x, seed=1)
    n = 128 * 128
    q = p / 100
    missing = 1.0 - obs.mask.double().mean().item()
    assert abs(missing - q) < 5 * math.sqrt(q * (1 - q) / n)


def test_inpaint_mask_shared_and_y_is_x_times_m():
    x = _image(64, 64) * 0.9 + 0.05  # strictly positive so y == 0 only where masked
    obs = Inpaint(50).corrupt(x, seed=2)
    m = obs.mask
    assert m.shape == (1, 1, 64, 64) and m.dtype == torch.float32
    assert set(torch.unique(m).tolist()) == {0.0, 1.0}
    zero = obs.y == 0
    assert torch.equal(zero[:, 0], zero[:, 1]) and torch.equal(zero[:, 0], zero[:, 2])
    assert torch.equal(zero[:, :1], m == 0)
    assert torch.equal(obs.y, x * m)


def test_inpaint_seeded():
    x = _image()
    a = Inpaint(50).corrupt(x, seed=4).mask
    assert torch.equal(a, Inpaint(50).corrupt(x, seed=4).mask)
    assert not torch.equal(a, Inpaint(50).corrupt(x, seed=5).mask)


def test_inpaint_user_mask_wins_over_p():
    x = _image(64, 64)
    m = torch.zeros(64, 64)
    m[::2] = 0.8  # thresholded at 0.5 → 1
    obs = Inpaint(p=10, mask=m).corrupt(x, seed=0)
    assert torch.equal(obs.mask[0, 0], (m >= 0.5).float())
    assert obs.task.params()["missing_percent"] == pytest.approx(50.0)
    with pytest.raises(InputError, match="mask size"):
        Inpaint(mask=m).corrupt(_image(64, 96))


def test_inpaint_loss_zero_at_truth():
    x = _image()
    obs = Inpaint(50).corrupt(x, seed=0)
    assert obs.loss(x).item() == 0.0
    assert obs.loss(torch.rand_like(x)).item() > 0.0


def test_inpaint_observe_masks_the_missing_pixels():
    x = _image(64, 64)
    m = (torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    junk = x.clone()
    junk[:, :, m[0, 0] == 0] = 0.7  # whatever a file holds where pixels are missing
    obs = Inpaint().observe(junk, m)
    assert torch.equal(obs.y, x * m)
    with pytest.raises(InputError, match="mask"):
        Inpaint().observe(junk)


# ---------------------------------------------------------------- Lanczos-2

def _lanczos_numpy(f):
    """Independent, loop-by-loop reading of the docs/design.md §6 formula."""
    a, n = 2, 4 * f
    c = (4 * f + 2) / 2
    taps = []
    for i in range(1, n + 1):
        d = abs(i + 0.5 - c) / f
        taps.append(1.0 if d == 0 else a * math.sin(math.pi * d) * math.sin(math.pi * d / a) / (math.pi**2 * d**2))
    k = np.array([[ti * tj for tj in taps] for ti in taps])
    return k / k.sum()


@pytest.mark.parametrize("f", [2, 4, 8])
def test_lanczos_kernel(f):
    k = lanczos2_kernel(f)
    assert k.shape == (4 * f, 4 * f) and k.dtype == torch.float32
    np.testing.assert_allclose(k.numpy(), _lanczos_numpy(f), rtol=0, atol=1e-8)
    assert k.double().sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(k, k.T) and torch.equal(k, k.flip(0)) and torch.equal(k, k.flip(1))
    # negative lobes exist (a Lanczos, not a box or a Gaussian)
    assert k.min() < 0


def _downsample_numpy(x, f):
    k = _lanczos_numpy(f)
    n = 4 * f
    pad = (n - f) // 2
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    out = np.zeros((b, c, h // f, w // f))
    for i in range(h // f):
        for j in range(w // f):
            out[:, :, i, j] = (xp[:, :, i * f:i * f + n, j * f:j * f + n] * k).sum(axis=(2, 3))
    return out


@pytest.mark.parametrize("f,h,w", [(2, 6, 10), (4, 16, 24), (8, 32, 16)])
def test_lanczos_downsample_matches_numpy(f, h, w):
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(f), dtype=torch.float64)
    got = lanczos2_downsample(x, f)
    assert got.shape == (2, 3, h // f, w // f)
    np.testing.assert_allclose(got.numpy(), _downsample_numpy(x.numpy(), f), rtol=0, atol=1e-6)


@pytest.mark.parametrize("f", [2, 4, 8])
def test_lanczos_downsample_constant_and_shape(f):
    x = torch.full((1, 3, 64, 96), 0.37)
    y = lanczos2_downsample(x, f)
    assert y.shape == (1, 3, 64 // f, 96 // f)
    torch.testing.assert_close(y, torch.full_like(y, 0.37), rtol=0, atol=1e-6)


def test_lanczos_downsample_errors():
    with pytest.raises(InputError, match="multiple of the factor"):
        lanczos2_downsample(torch.zeros(1, 1, 30, 32), 4)
    with pytest.raises(InputError, match="factor"):
        lanczos2_downsample(torch.zeros(1, 1, 30, 30), 3)


# ---------------------------------------------------------------- super-resolution

@pytest.mark.parametrize("f", [2, 4, 8])
def test_sr_corrupt(f):
    x = _image(64, 128)
    obs = SuperResolve(f).corrupt(x, seed=0)
    assert obs.y.shape == (1, 3, 64 // f, 128 // f) and obs.y.dtype == torch.float32
    assert obs.y.min() >= 0 and obs.y.max() <= 1
    assert obs.output_size == (64, 128)
    # PIL's Lanczos resize and the Lanczos-2 operator agree closely on a smooth image
    d = obs.forward(x) - obs.y
    assert torch.isfinite(d).all() and d.pow(2).mean() < 1e-3
    # deterministic, and not 8-bit quantised
    assert torch.equal(obs.y, SuperResolve(f).corrupt(x, seed=5).y)
    assert not torch.allclose(obs.y * 255, (obs.y * 255).round(), atol=1e-3)


def test_sr_loss_and_scoring_view():
    x = _image(64, 96)
    obs = SuperResolve(4).observe(lanczos2_downsample(x, 4).clamp(0, 1))
    assert obs.loss(x).item() < 1e-12
    assert obs.scoring_view(x).shape == obs.y.shape
    with pytest.raises(InputError, match="network output"):
        obs.loss(obs.y)  # LR-sized output is a mistake


def test_loss_is_mse_and_broadcasts_over_batch():
    x = _image()
    obs = Denoise(25).corrupt(x, seed=0)
    out = torch.rand(3, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    expected = np.mean((out.double().numpy() - obs.y.double().numpy()) ** 2)
    assert obs.loss(out).item() == pytest.approx(expected, rel=1e-5)
    assert Denoise(25).observe(x).loss(x).item() == 0.0
    assert torch.equal(obs.scoring_view(out), out)
    inpaint = Inpaint(50).corrupt(x)
    assert torch.equal(inpaint.scoring_view(out), out)  # raw output, not masked


# ---------------------------------------------------------------- resized()

@pytest.mark.parametrize(
    "task,hw,expect_out",
    [
        (Denoise(25), (96, 160), (64, 96)),
        (Denoise(25), (256, 128), (128, 64)),
        (Denoise(25), (512, 512), (64, 64)),
        (Inpaint(50), (96, 160), (64, 96)),
        (SuperResolve(4), (96, 160), (64, 96)),
        (SuperResolve(8), (128, 224), (64, 128)),  # 224·64/128 = 112 = 3.5·32: halves round up
        (Denoise(25), (96, 208), (64, 128)),  # 208·64/96 = 138.7 → 128
        (SuperResolve(2), (320, 128), (160, 64)),
    ],
)
def test_resized_shapes(task, hw, expect_out):
    x = _image(*hw)
    obs = task.corrupt(x, seed=0)
    small = obs.resized(64)
    assert small.output_size == expect_out
    f = getattr(task, "factor", 1)
    assert small.y.shape == (1, 3, expect_out[0] // f, expect_out[1] // f)
    assert small.y.min() >= 0 and small.y.max() <= 1 and torch.isfinite(small.y).all()
    assert small.task is task
    if isinstance(task, Inpaint):
        assert small.mask.shape == (1, 1, *expect_out)
        assert set(torch.unique(small.mask).tolist()) <= {0.0, 1.0}
        assert torch.equal(small.y, small.y * small.mask)
    else:
        assert small.mask is None
    out = torch.rand(1, 3, *expect_out)
    assert torch.isfinite(small.loss(out))


def test_resized_inpaint_keeps_brightness():
    # Missing pixels are zeros in y; the small y must not be darkened by them.
    x = torch.full((1, 3, 128, 192), 0.6)
    small = Inpaint(50).corrupt(x, seed=0).resized(64)
    known = small.y[small.mask.expand_as(small.y) == 1]
    assert known.numel() > 0
    torch.testing.assert_close(known, torch.full_like(known, 0.6), rtol=0, atol=1e-5)


def test_resized_bad_short_side():
    obs = Denoise(25).corrupt(_image())
    with pytest.raises(InputError, match="short_side"):
        obs.resized(50)


def test_to_device():
    obs = Inpaint(50).corrupt(_image())
    moved = obs.to("cpu")
    assert torch.equal(moved.y, obs.y) and torch.equal(moved.mask, obs.mask)


# ---------------------------------------------------------------- parameters

@pytest.mark.parametrize(
    "make,param",
    [
        (lambda: Denoise(0), "sigma"),
        (lambda: Denoise(-5), "sigma"),
        (lambda: Denoise(float("nan")), "sigma"),
        (lambda: Denoise(float("inf")), "sigma"),
        (lambda: Denoise("25"), "sigma"),
        (lambda: Inpaint(0), "p"),
        (lambda: Inpaint(100), "p"),
        (lambda: Inpaint(float("nan")), "p"),
        (lambda: Inpaint(p=None), "p"),
        (lambda: Inpaint(mask=torch.full((8, 8), float("nan"))), "mask"),
        (lambda: Inpaint(mask=torch.zeros(8, 8)), "mask"),
        (lambda: Inpaint(mask=torch.ones(3, 8, 8)), "mask"),
        (lambda: Inpaint(mask=torch.full((8, 8), 2.0)), "mask"),
        (lambda: SuperResolve(3), "factor"),
        (lambda: SuperResolve(16), "factor"),
        (lambda: SuperResolve(4.5), "factor"),
        (lambda: SuperResolve(True), "factor"),
        (lambda: make_task("blur"), "unknown task"),
        (lambda: make_task("denoise", p=3), "p"),
        (lambda: make_task("sr", factor=5), "factor"),
    ],
)
def test_bad_parameters(make, param):
    with pytest.raises(InputError, match=param):
        make()


def test_make_task_aliases_and_params():
    assert isinstance(make_task("denoise", sigma=15), Denoise)
    assert make_task("Denoise").params() == {"sigma": 25.0}
    assert make_task("inpaint", p=30).params() == {"p": 30.0}
    for name in ("sr", "super-resolution", "superres"):
        t = make_task(name, factor=8)
        assert isinstance(t, SuperResolve) and t.params() == {"factor": 8}
    assert make_task("sr", factor=None).params() == {"factor": 4}  # None = default


def test_observation_checks():
    x = _image()
    with pytest.raises(InputError, match="mask"):
        Denoise(25).observe(x, mask=torch.ones(64, 96))
    with pytest.raises(InputError, match="NaN"):
        Denoise(25).observe(torch.full((1, 3, 64, 64), float("nan")))
    with pytest.raises(InputError, match=r"\(1, C, H, W\)"):
        Denoise(25).corrupt(x[0])
    with pytest.raises(InputError, match="multiple of the SR factor"):
        SuperResolve(4).corrupt(x[..., :62, :])
    with pytest.raises(InputError, match="seed"):
        Denoise(25).corrupt(x, seed=1.5)
    with pytest.raises(InputError, match="mask"):
        Observation(Inpaint(50), x, None)
