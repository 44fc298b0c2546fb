"""Public API: input kinds, result contents, size rules (docs/design.md §1, §2)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import isnas_fast
from isnas_fast import Genotype, InputError
from isnas_fast.network import BASELINES
from isnas_fast.tasks import Denoise, Inpaint, SuperResolve

TINY = dict(num_candidates=3, cohort_size=2, cohort_iterations=3, iterations=3, quiet=True)


def test_public_names():
    for name in ("restore", "score", "build_network", "spectral_scores", "Genotype"):
        assert hasattr(isnas_fast, name)
    assert isnas_fast.Genotype.parse("1,0000000000000000000000000").upsample == 1


def test_restore_returns_same_kind_and_report(small):
    noisy = Denoise(25).corrupt(small, seed=0).y
    arr = noisy[0].permute(1, 2, 0).numpy()
    r = isnas_fast.restore(arr, "denoise", sigma=25, ground_truth=small, **TINY)
    assert isinstance(r.image, np.ndarray) and r.image.shape == (64, 64, 3) and r.image.dtype == np.float32
    # the two best-scoring candidates and, with the quick preset's validated selection, NAS-DIP's genotype
    assert isinstance(r.genotype, Genotype) and len(r.cohort) == 3
    assert r.cohort[-1].genotype == BASELINES["nasdip-denoise"]
    rep = r.report()
    for key in ("task", "params", "genotype", "cohort", "timings_s", "device", "versions", "psnr", "ssim"):
        assert key in rep
    assert rep["params"] == {"sigma": 25.0} and rep["device"] == "cpu"
    assert rep["cuda_graph"] is False and rep["compiled"] is False  # a short CPU run: plain eager steps
    assert rep["precision"] == "fp32"  # the default, resolved for the CPU
    assert np.isfinite(rep["psnr"]) and 0 < rep["ssim"] <= 1
    pil = Image.fromarray((arr * 255).round().astype(np.uint8))
    r2 = isnas_fast.restore(pil, "denoise", **TINY)
    assert isinstance(r2.image, Image.Image) and r2.image.size == (64, 64)
    assert "psnr" not in r2.report()
    r3 = isnas_fast.restore(noisy[0], "denoise", **TINY)
    assert isinstance(r3.image, torch.Tensor) and r3.image.shape == (3, 64, 64)


def test_restore_is_deterministic(small):
    noisy = Denoise(25).corrupt(small, seed=0).y
    a = isnas_fast.restore(noisy, "denoise", seed=5, **TINY)
    b = isnas_fast.restore(noisy, "denoise", seed=5, **TINY)
    assert a.genotype == b.genotype and torch.equal(a.tensor, b.tensor)


def test_restore_fixed_arch_and_dip_skip(small):
    noisy = Denoise(25).corrupt(small, seed=0).y
    r = isnas_fast.restore(noisy, "denoise", arch="nasdip-denoise", iterations=2, quiet=True)
    assert r.cohort == [] and r.in_channels == 32 and str(r.genotype).startswith("158,")
    r = isnas_fast.restore(noisy, "denoise", arch="64,0001010110110101110010111", iterations=2, quiet=True)
    assert r.in_channels == 3
    r = isnas_fast.restore(noisy, "denoise", arch="dip-skip", iterations=2, quiet=True)
    assert r.genotype == "dip-skip" and r.report()["width"] == 128


def test_restore_inpaint_with_mask_and_sr_sizes(sample):
    x = sample[..., :70, :100]
    obs = Inpaint(p=50).corrupt(x, seed=0)
    r = isnas_fast.restore(obs.y, "inpaint", mask=obs.mask[0, 0].numpy(), ground_truth=x, **TINY)
    assert r.tensor.shape == (1, 3, 70, 100) and r.notices == []
    assert r.observation.y.shape[-2:] == (96, 128)
    # the padding is unknown to inpainting: it never enters the loss
    assert float(r.observation.mask[..., :13, :].sum()) == 0.0
    lr = SuperResolve(4).corrupt(sample, seed=0).y[..., :18, :21]  # padded to 24x24 -> cropped to 72x84 output
    r = isnas_fast.restore(lr, "sr", factor=4, **TINY)
    assert r.tensor.shape == (1, 3, 72, 84) and r.task.params() == {"factor": 4}
    assert r.run.output().shape == (1, 3, 72, 84)


def test_sr_output_is_factor_times_the_input(sample):
    lr = SuperResolve(2).corrupt(sample[..., :68, :68], seed=0).y  # 34x34 -> padded to 48x48 -> 68x68 out
    gt = sample[..., :68, :68]
    r = isnas_fast.restore(lr, "sr", factor=2, ground_truth=gt, **TINY)
    assert r.tensor.shape == (1, 3, 68, 68)
    assert torch.equal(r.ground_truth, gt)


def test_restore_takes_a_list(sample):
    a, b = sample[..., :64, :64], sample[..., 8:80, 4:70]
    noisy = [Denoise(25).corrupt(x, seed=0).y for x in (a, b)]
    results = isnas_fast.restore(noisy, "denoise", sigma=25, arch="nasdip-denoise", iterations=2, quiet=True)
    assert [r.tensor.shape[-2:] for r in results] == [(64, 64), (72, 66)]
    alone = isnas_fast.restore(noisy[1], "denoise", sigma=25, arch="nasdip-denoise", iterations=2, quiet=True)
    assert torch.equal(alone.tensor, results[1].tensor)


@pytest.mark.parametrize("call,match", [
    (lambda x: isnas_fast.restore(x[..., :40, :64], "denoise", **TINY), "at least 64"),
    (lambda x: isnas_fast.restore(x, "denoise", sigma=0, **TINY), "sigma"),
    (lambda x: isnas_fast.restore(x, "inpaint", **TINY), "mask"),
    (lambda x: isnas_fast.restore(x, "sr", factor=3, **TINY), "factor"),
    (lambda x: isnas_fast.restore(x, "denoise", ground_truth=x[..., :64, :64], **TINY), "ground truth"),
    (lambda x: isnas_fast.restore(x * float("nan"), "denoise", **TINY), "NaN"),
    (lambda x: isnas_fast.restore(x, "deblur", **TINY), "unknown task"),
    (lambda x: isnas_fast.restore(x, "denoise", preset="fast", **TINY), "preset"),
    (lambda x: isnas_fast.restore(x, "denoise", precision="fp16", **TINY), "precision must be one of fp32, tf32"),
    (lambda x: isnas_fast.restore(x, "denoise", device="cuda:0" if not torch.cuda.is_available() else "tpu",
                                  **TINY), "device|cuda"),
])
def test_bad_input_is_one_clear_error(sample, call, match):
    with pytest.raises(InputError, match=match) as e:
        call(sample[..., :96, :96])
    assert "\n" not in str(e.value)


def test_score_api(small):
    noisy = Denoise(25).corrupt(small, seed=0).y
    rows = isnas_fast.score(noisy, ["64,0001010110110101110010111"], "denoise",
                            ["psd db strip mse", "random"], width=16, quiet=True)
    assert list(rows[0]) == ["genotype", "psd_db_strip_mse", "random"]
    with pytest.raises(InputError, match="metric"):
        isnas_fast.score(noisy, ["64,0001010110110101110010111"], "denoise", ["ssim"], width=16, quiet=True)


def test_spectral_scores_public_entry():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(3, 64, 64, generator=g)
    outs = torch.rand(4, 3, 64, 64, generator=g)
    s = isnas_fast.spectral_scores(y, outs, ["psd_db_strip_mse", "psd_strip_hist_emd"], backend="reference")
    assert s.shape == (4, 2) and s.dtype == torch.float64 and bool(torch.isfinite(s).all())
    with pytest.raises(InputError, match="backend"):
        isnas_fast.spectral_scores(y, outs, ["psd_db_mse"], backend="cuda-magic")


def test_undertrained_notice_compares_the_residual_with_the_noise(small):
    from isnas_fast.api import undertrained_notice

    obs = Denoise(25).corrupt(small, seed=0)
    assert undertrained_notice(small, obs) is None  # the clean image: residual = the noise's variance
    flat = torch.full_like(small, float(small.mean()))
    assert "worse than the input" in undertrained_notice(flat, obs)
    r = isnas_fast.restore(obs.y, "denoise", sigma=25, arch="nasdip-denoise", iterations=2, quiet=True)
    assert any("raise --iterations" in n for n in r.notices)
