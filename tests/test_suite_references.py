"""The suite's reference methods (``bm3d``, ``bicubic``, ``biharmonic``): each against a
direct call of the library it wraps, the one-line refusals (wrong task, missing package),
and a tiny suite whose rows, tables and re-run command include a reference."""
from __future__ import annotations

import csv
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from isnas_fast.cli import main
from isnas_fast.errors import InputError
from isnas_fast.io import load_image, save_image
from isnas_fast.quality import psnr, ssim
from isnas_fast.suite import run_suite
from isnas_fast.suite.jobs import DEFAULT_METHODS, default_methods
from isnas_fast.suite.references import REFERENCE_LABEL, bicubic, biharmonic, bm3d, run_reference

TINY = dict(width=16, iterations=3, cohort_iterations=2, num_candidates=3, cohort_size=2, early_stopping=False)
EXTRA = "pip install 'isnas-fast[references]'"


def _random(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _hwc(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x[0].permute(1, 2, 0).numpy())


def test_bm3d_is_the_package_told_sigma():
    package = pytest.importorskip("bm3d", reason="the bm3d reference needs the bm3d package")
    profile = package.BM3DProfile()
    profile.num_threads = 1
    rgb, grey = _random((1, 3, 32, 32), 1), _random((1, 1, 32, 40), 2)
    ours_rgb = bm3d(rgb, 25)
    direct_rgb = np.clip(package.bm3d_rgb(_hwc(rgb), 25 / 255, profile), 0, 1)
    assert ours_rgb.shape == rgb.shape and ours_rgb.dtype == torch.float32
    assert np.abs(_hwc(ours_rgb) - direct_rgb).max() < 1e-6
    ours_grey = bm3d(grey, 15)
    direct_grey = np.clip(package.bm3d(grey[0, 0].numpy(), 15 / 255, profile), 0, 1)
    assert np.abs(ours_grey[0, 0].numpy() - direct_grey).max() < 1e-6
    assert torch.equal(bm3d(grey, 15), ours_grey)  # one thread: the same bits every call
    # and it denoises: a smooth image with sigma 25 noise gains several dB
    clean = torch.linspace(0.2, 0.8, 40).expand(1, 1, 32, 40).contiguous()
    noisy = (clean + 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    assert float(psnr(bm3d(noisy, 25), clean)[0]) > float(psnr(noisy, clean)[0]) + 6


def test_bicubic_is_torch_bicubic_upsampling():
    low = _random((1, 3, 16, 24), 4)
    out = bicubic(low, 4)
    expected = F.interpolate(low, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    assert out.shape == (1, 3, 64, 96) and torch.equal(out, expected)
    assert 0 <= float(out.min()) and float(out.max()) <= 1  # the cubic's overshoot clamped
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(bicubic(flat, 2), torch.full((1, 1, 16, 16), 0.3))


def test_biharmonic_is_skimage_inpainting():
    restoration = pytest.importorskip("skimage.restoration", reason="the biharmonic reference needs scikit-image")
    image = _random((1, 3, 32, 40), 5)
    mask = (_random((1, 1, 32, 40), 6) >= 0.5).float()
    observed = image * mask
    out = biharmonic(observed, mask)
    direct = np.clip(restoration.inpaint_biharmonic(_hwc(observed), mask[0, 0].numpy() == 0, channel_axis=-1), 0, 1)
    assert out.shape == image.shape and np.abs(_hwc(out) - direct).max() < 1e-6
    known = mask.bool().expand_as(image)
    assert torch.allclose(out[known], observed[known], atol=1e-6)  # known pixels kept
    assert torch.equal(run_reference("biharmonic", observed, mask=mask), out)


@pytest.fixture
def one_image(tmp_path: Path, sample: torch.Tensor) -> Path:
    """A folder with one 64x64 greyscale crop of the sample (BM3D on one channel is the quicker)."""
    folder = tmp_path / "images"
    folder.mkdir()
    save_image(sample[..., 32:96, 32:96].mean(dim=1, keepdim=True), folder / "a.png")
    return folder


@pytest.mark.parametrize("task,params,method,message", [
    ("sr", {"factor": 4}, "bm3d", "method bm3d is the reference for denoise, not sr: the sr reference is bicubic"),
    ("denoise", {"sigma": 25}, "bicubic", "method bicubic is the reference for sr, not denoise"),
    ("denoise", {"sigma": 25}, "biharmonic", "method biharmonic is the reference for inpaint, not denoise"),
])
def test_a_reference_of_another_task_is_refused(one_image, tmp_path, task, params, method, message):
    with pytest.raises(InputError, match=message):
        run_suite(one_image, task, out=tmp_path / "out", methods=f"nasdip,{method}", quiet=True, **params, **TINY)
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.parametrize("method,module,task,dist", [
    ("bm3d", "bm3d", "denoise", "bm3d"), ("biharmonic", "skimage.restoration", "inpaint", "scikit-image")])
def test_a_missing_package_is_refused_up_front(one_image, tmp_path, monkeypatch, capsys, method, module, task,
                                               dist):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if the package were not installed
    with pytest.raises(InputError) as info:
        run_suite(one_image, task, out=tmp_path / "out", methods=f"nasdip,{method}", quiet=True, **TINY)
    assert str(info.value) == f"method {method} needs the {dist} package: {EXTRA}"
    assert not (tmp_path / "out").exists()
    capsys.readouterr()
    assert main(["suite", str(one_image), "--task", task, "--methods", method, "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"needs the {dist} package: {EXTRA}")
    # without the package, the default methods are the DIP methods alone
    assert default_methods(task) == DEFAULT_METHODS


def test_default_methods_add_the_tasks_reference():
    assert default_methods("sr") == (*DEFAULT_METHODS, "bicubic")  # needs nothing extra
    for task, method, module in (("denoise", "bm3d", "bm3d"), ("inpaint", "biharmonic", "skimage.restoration")):
        pytest.importorskip(module, reason=f"the {method} reference needs its package")
        assert default_methods(task) == (*DEFAULT_METHODS, method)


def test_tiny_suite_shows_the_gap_to_bm3d(one_image, tmp_path, capsys):
    pytest.importorskip("bm3d", reason="the bm3d reference needs the bm3d package")
    out = tmp_path / "out"
    args = ["suite", str(one_image), "--task", "denoise", "--sigma", "25", "--methods", "isnas,nasdip,bm3d",
            "--out", str(out), "--width", "16", "--iterations", "3", "--cohort-iterations", "2", "--candidates",
            "3", "--cohort-size", "2", "--no-early-stopping", "--threads", "1", "--batch", "2", "-q"]
    assert main(args) == 0
    rows = {r["method"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert set(rows) == {"isnas", "nasdip", "bm3d"}
    ref = rows["bm3d"]
    assert ref["reference"] is True and not rows["nasdip"]["reference"] and not rows["isnas"]["reference"]
    assert REFERENCE_LABEL in ref["label"] and ref["versions"]["bm3d"]
    assert ref["iterations"] is None and ref["timings_s"]["total"] > 0
    # the row's numbers are BM3D's on the suite's own input file, scored against its clean file
    observed, clean = load_image(out / ref["input"]), load_image(out / ref["ground_truth"])
    expected = bm3d(observed, 25)
    assert ref["psnr"] == float(psnr(expected, clean)[0]) and ref["ssim"] == float(ssim(expected, clean)[0])
    saved = load_image(out / ref["restored"])
    assert (saved - expected).abs().max() <= 0.5 / 255 + 1e-6  # the saved PNG: the output rounded to 8 bits
    # its re-run command writes the same image
    words = shlex.split(ref["rerun"])
    assert words[:2] == ["python", "-c"]
    cwd = os.getcwd()
    os.chdir(out)
    try:
        exec(words[2], {})
    finally:
        os.chdir(cwd)
    assert torch.equal(load_image(out / "rerun-a-bm3d-seed0.png"), saved)
    # tables: the reference labelled and marked, in the per-method and the paired table
    md = (out / "summary.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| bm3d †: BM3D told the task's sigma (reference, no"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == "–" and cells[5] != "–"  # no steps; seconds per job
    paired = md.split("## isnas against each method")[1]
    assert "| bm3d †: BM3D told the task's sigma (reference, no training) | 1 |" in paired
    assert f"† {REFERENCE_LABEL}" in md
    methods = {r["method"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert methods["bm3d"]["reference"] == "True" and methods["nasdip"]["reference"] == "False"
    gap = {r["method"]: r for r in csv.DictReader((out / "paired.csv").open())}["bm3d"]
    assert gap["reference"] == "True"
    assert float(gap["diff_mean"]) == pytest.approx(rows["isnas"]["psnr"] - ref["psnr"], abs=1e-6)
    if (out / "plots").is_dir():  # with matplotlib: BM3D's PSNR is a dashed line beside the DIP curves
        assert (out / "plots" / "curves-a.png").stat().st_size > 1000


@pytest.mark.parametrize("task,params,method", [("sr", {"factor": 4}, "bicubic"),
                                                ("inpaint", {"p": 50}, "biharmonic")])
def test_sr_and_inpainting_references_in_a_suite(tmp_path, sample, task, params, method):
    if method == "biharmonic":
        pytest.importorskip("skimage.restoration", reason="the biharmonic reference needs scikit-image")
    images = tmp_path / "images"
    images.mkdir()
    save_image(sample[..., :64, :64], images / "rgb.png")
    out = tmp_path / "out"
    result = run_suite(images, task, out=out, methods=method, seeds=2, quiet=True, **params, **TINY)
    assert len(result.rows) == 2
    for row in result.rows:
        observed, clean = load_image(out / row["input"]), load_image(out / row["ground_truth"])
        if method == "bicubic":
            expected = bicubic(observed, 4)
            assert row["psnr_y_channel"] and row["psnr"] == float(psnr(expected, clean, y_channel=True)[0])
        else:
            expected = biharmonic(observed, load_image(out / row["mask"]))
            assert not row["psnr_y_channel"] and row["psnr"] == float(psnr(expected, clean)[0])
        assert row["reference"] and row["seed"] in (0, 1) and row["timings_s"]["total"] >= 0
        cwd = os.getcwd()
        os.chdir(out)
        try:
            exec(shlex.split(row["rerun"])[2], {})
        finally:
            os.chdir(cwd)
        rerun = load_image(out / f"rerun-rgb-{method}-seed{row['seed']}.png")
        assert torch.equal(rerun, load_image(out / row["restored"]))
    if "psnr_per_image.png" in result.files:  # drawn with matplotlib: references alone still plot
        assert (out / "plots" / "grid-rgb.png").stat().st_size > 1000
