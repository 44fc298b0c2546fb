"""The isnas-fast command line end to end on tiny images, and its bad-input handling."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from isnas_fast.cli import main
from isnas_fast.io import save_image

TINY = ["--candidates", "3", "--cohort-size", "2", "--cohort-iterations", "3", "--iterations", "3", "-q"]


@pytest.fixture()
def files(tmp_path: Path, sample):
    clean = tmp_path / "clean.png"
    save_image(sample[..., :70, :100], clean)  # 100x70: exercises the crop to 96x64
    return tmp_path, clean


def _run(*args: str) -> int:
    return main([str(a) for a in args])


def test_corrupt_then_restore_all_tasks(files, capsys):
    d, clean = files
    assert _run("corrupt", clean, "--task", "denoise", "--sigma", "25", "-o", d / "noisy.png") == 0
    assert _run("corrupt", clean, "--task", "inpaint", "--p", "50", "-o", d / "holes.png",
                "--mask-out", d / "mask.png") == 0
    assert _run("corrupt", clean, "--task", "sr", "--factor", "2", "-o", d / "lr.png") == 0
    assert Image.open(d / "lr.png").size == (50, 35)
    m = Image.open(d / "mask.png")
    assert m.mode == "L" and m.size == (100, 70)

    assert _run("restore", d / "noisy.png", "--task", "denoise", "-o", d / "r1.png", "--ground-truth", clean,
                "--json", d / "r1.json", *TINY) == 0
    rep = json.loads((d / "r1.json").read_text())
    for key in ("task", "params", "genotype", "cohort", "timings_s", "device", "versions", "psnr", "ssim"):
        assert key in rep
    assert Image.open(d / "r1.png").size == (100, 70)
    assert rep["padding"]["crop"] == {"top": 13, "left": 14, "height": 70, "width": 100}
    assert rep["noise"]["estimated"] and rep["noise"]["method"] == "pca"

    assert _run("restore", d / "holes.png", "--task", "inpaint", "--mask", d / "mask.png", "-o", d / "r2.png",
                *TINY) == 0
    assert _run("restore", d / "lr.png", "--task", "sr", "--factor", "2", "-o", d / "r3.png",
                "--ground-truth", clean, *TINY) == 0
    assert Image.open(d / "r3.png").size == (100, 70)
    assert _run("restore", d / "noisy.png", "--task", "denoise", "-o", d / "r4.png", "--arch", "nasdip-denoise",
                "--iterations", "2", "-q") == 0


def test_score_json_to_stdout(files, capsys):
    d, clean = files
    _run("corrupt", clean, "--task", "denoise", "-o", d / "noisy.png", "-q")
    capsys.readouterr()
    assert _run("score", d / "noisy.png", "--task", "denoise", "--models", "random", "--candidates", "3",
                "--width", "16", "--metric", "psd_db_strip_mse", "--metric", "per_bw_0.9", "--json", "-q") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metrics"] == ["psd_db_strip_mse", "per_bw_0.9"] and len(data["scores"]) == 3


def test_restore_json_to_stdout_is_clean(files, capsys):
    d, clean = files
    _run("corrupt", clean, "--task", "denoise", "-o", d / "noisy.png", "-q")
    capsys.readouterr()
    assert _run("restore", d / "noisy.png", "--task", "denoise", "-o", d / "r.png", "--json", "-",
                "--arch", "64,0001010110110101110010111", "--iterations", "2", "-q") == 0
    assert json.loads(capsys.readouterr().out)["genotype"] == "64,0001010110110101110010111"


BAD = [
    (["restore", "{missing}", "--task", "denoise", "-o", "{d}/o.png"], "not found"),
    (["restore", "{trunc}", "--task", "denoise", "-o", "{d}/o.png"], "truncated|cannot read|damaged"),
    (["restore", "{rgba}", "--task", "denoise", "-o", "{d}/nodir/o.png"], "output folder does not exist"),
    (["restore", "{clean}", "--task", "denoise", "--sigma", "0", "-o", "{d}/o.png"], "sigma"),
    (["restore", "{clean}", "--task", "inpaint", "-o", "{d}/o.png"], "mask"),
    (["restore", "{clean}", "--task", "inpaint", "--mask", "{small}", "-o", "{d}/o.png"], "mask size"),
    (["restore", "{clean}", "--task", "denoise", "--ground-truth", "{small}", "-o", "{d}/o.png"], "ground truth"),
    (["restore", "{small}", "--task", "denoise", "-o", "{d}/o.png"], "at least 64"),
    (["restore", "{clean}", "--task", "denoise", "--arch", "240,0000000000000000000000000", "-o", "{d}/o.png"],
     "invalid upsampling index 240"),
    (["restore", "{clean}", "--task", "denoise", "--factor", "2", "-o", "{d}/o.png"], "--factor"),
    (["restore", "{clean}", "--task", "denoise", "-o", "{d}/o.txt"], "must end in"),
    (["restore", "{clean}", "--task", "denoise", "--width", "24", "-o", "{d}/o.png"], "width"),
    (["restore", "{clean}", "--task", "denoise", "--device", "cpu", "--cuda-graph", "-o", "{d}/o.png"],
     "cuda_graph needs a CUDA device"),
    (["restore", "{clean}", "--task", "denoise", "--device", "cpu", "--arch", "nasdip-denoise", "--cuda-graph",
      "-o", "{d}/o.png"], "cuda_graph needs a CUDA device"),
    (["restore", "{clean}", "--task", "denoise", "--compile", "--cuda-graph", "-o", "{d}/o.png"],
     "alternatives"),
    (["corrupt", "{clean}", "--task", "inpaint", "--p", "100", "-o", "{d}/o.png"], "p must"),
    (["score", "{clean}", "--task", "denoise", "--models", "{d}/none.csv", "--width", "16"], "not found"),
]


@pytest.mark.parametrize("argv,match", BAD)
def test_bad_input_exit_2_one_line_no_output(files, capsys, argv, match):
    d, clean = files
    trunc = d / "trunc.png"
    trunc.write_bytes(clean.read_bytes()[: len(clean.read_bytes()) // 2])
    Image.new("RGBA", (64, 64)).save(d / "rgba.png")
    Image.new("L", (40, 40), 255).save(d / "smallimg.png")
    names = dict(d=d, clean=clean, missing=d / "missing.png", trunc=trunc, rgba=d / "rgba.png",
                 small=d / "smallimg.png")
    before = set(p.name for p in d.iterdir())
    capsys.readouterr()
    rc = main([a.format(**names) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err and err[-1].startswith("isnas-fast: error: ")
    import re

    assert re.search(match, err[-1]), err[-1]
    assert "Traceback" not in "\n".join(err)
    assert set(p.name for p in d.iterdir()) == before  # nothing written, no temp files left


def test_console_script_help_and_error_exit():
    exe = Path(sys.executable).with_name("isnas-fast")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "isnas_fast.cli"]
    out = subprocess.run(cmd + ["--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "restore" in out.stdout and "demo" in out.stdout
    out = subprocess.run(cmd + ["restore", "nope.png", "--task", "denoise", "-o", "x.png"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "not found" in out.stderr


def test_demo_with_a_tiny_preset(tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    import isnas_fast.search as search

    tiny = replace(search.PRESETS["quick"], num_candidates=3, cohort_size=2, cohort_iterations=3,
                   final_iterations=3)
    monkeypatch.setitem(search.PRESETS, "quick", tiny)
    assert main(["demo", "--out-dir", str(tmp_path / "demo"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "noisy PSNR" in out and "restored PSNR" in out
    for name in ("clean.png", "noisy.png", "restored.png", "report.json"):
        assert (tmp_path / "demo" / name).exists()
    rep = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert rep["noisy_psnr"] < 25 and "psnr" in rep


def test_corrupt_keeps_sixteen_bit_png(tmp_path, capsys):
    import numpy as np
    import png

    arr = np.random.default_rng(0).integers(0, 65536, (64, 64, 3), dtype=np.uint16)
    src, out = tmp_path / "in16.png", tmp_path / "noisy16.png"
    with open(src, "wb") as fh:
        png.Writer(64, 64, greyscale=False, bitdepth=16).write(fh, arr.reshape(64, 64 * 3).tolist())
    assert main(["corrupt", str(src), "--task", "denoise", "-o", str(out), "-q"]) == 0
    info = png.Reader(filename=str(out)).read()[3]
    assert info["bitdepth"] == 16 and info["planes"] == 3


def test_rgba_input_warns_in_one_line(tmp_path, capsys):
    src = tmp_path / "rgba.png"
    Image.new("RGBA", (64, 64), (200, 100, 50, 128)).save(src)
    capsys.readouterr()
    assert main(["corrupt", str(src), "--task", "denoise", "-o", str(tmp_path / "o.png"), "-q"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("isnas-fast: warning: ") and "alpha" in err[0]
    assert "UserWarning:" not in "\n".join(err)
