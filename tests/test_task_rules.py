"""Each task owns how its quality is measured and what noise level it states; a report's numbers agree."""
from __future__ import annotations

import pytest
import torch

import isnas_fast
from isnas_fast.dip import EarlyStopping
from isnas_fast.quality import psnr, ssim
from isnas_fast.tasks import Denoise, Inpaint, SuperResolve, task_class

GENOTYPE = "64,0001010110110101110010111"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_psnr_is_on_the_y_channel_for_rgb_super_resolution_only(small):
    g = torch.Generator().manual_seed(0)
    x = (small + 0.05 * torch.randn(small.shape, generator=g)).clamp(0, 1)
    rgb, y = float(psnr(x, small)[0]), float(psnr(x, small, y_channel=True)[0])
    assert rgb != pytest.approx(y, abs=1e-3)
    assert float(SuperResolve(4).psnr(x, small)[0]) == y
    assert float(Denoise(25).psnr(x, small)[0]) == rgb
    assert float(Inpaint(50).psnr(x, small)[0]) == rgb
    gray, gray_ref = x[:, :1], small[:, :1]  # one channel: every task on the channel itself
    assert float(SuperResolve(2).psnr(gray, gray_ref)[0]) == float(psnr(gray, gray_ref)[0])
    assert task_class("super-resolution") is SuperResolve and task_class("sr").psnr_on_y(3)
    assert float(SuperResolve(4).ssim(x, small)[0]) == float(ssim(x, small)[0])


def test_the_noise_level_is_stated_by_the_task():
    assert Denoise(17.5).noise_level == 17.5
    assert SuperResolve(4).noise_level is None and Inpaint(50).noise_level is None


def test_an_sr_report_agrees_with_itself(sample):
    clean = sample[..., :64, :64]
    lr = SuperResolve(2).corrupt(clean, seed=0).y  # 32x32 -> a 64x64 output, no padding
    r = isnas_fast.restore(lr, "sr", factor=2, ground_truth=clean, arch=GENOTYPE, iterations=12,
                           early_stopping=EarlyStopping(window=4), quiet=True)
    rep, d = r.report(), r.dip
    assert rep["psnr_y_channel"] is True
    y = float(psnr(r.tensor, clean, y_channel=True)[0])
    assert rep["psnr"] == round(y, 4) != round(float(psnr(r.tensor, clean)[0]), 4)
    es = rep["early_stopping"]
    assert es["method"] == "discrepancy" and es["stopped_early"] is False  # no noise level: it never fires
    # the detector's returned image is the restored one: the same PSNR, measured the same way
    assert es["psnr_at_detected"] == rep["psnr"]
    # the curves are on the Y channel too: the last raw point is the last raw output's Y-channel PSNR
    assert d.psnr_raw_curve[-1] == pytest.approx(float(psnr(d.last_output, clean, y_channel=True)[0]), abs=1e-9)
    assert es["best_psnr"] == round(max(max(d.psnr_curve), max(d.psnr_raw_curve)), 4)


def test_the_report_names_the_detector_that_did_not_fire(small):
    noisy = Denoise(25).corrupt(small, seed=0).y
    r = isnas_fast.restore(noisy, "denoise", sigma=25, arch=GENOTYPE, iterations=3, quiet=True)
    es = r.report()["early_stopping"]  # the quick preset's detector, too short a run to find anything
    assert es["method"] == "discrepancy" and es["detected_iteration"] is None and es["stopped_early"] is False
    off = isnas_fast.restore(noisy, "denoise", sigma=25, arch=GENOTYPE, iterations=3, early_stopping=False,
                             quiet=True)
    assert off.report()["early_stopping"] is None


def test_repr_is_a_short_summary(small):
    noisy = Denoise(25).corrupt(small, seed=0).y
    r = isnas_fast.restore(noisy, "denoise", sigma=25, arch=GENOTYPE, iterations=3, ground_truth=small, quiet=True)
    text = repr(r)
    assert len(text) < 200 and "\n" not in text
    for part in ("Denoise(sigma=25.0)", "size=64x64", GENOTYPE, f"psnr={r.psnr:.2f} dB", "steps=3", "seconds="):
        assert part in text
