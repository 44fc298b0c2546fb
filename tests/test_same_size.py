"""Every task returns the input's size: padding to what the networks need, cropped back
in the result, the report, bundles and exported models; many inputs and the standard streams."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import isnas_fast
from isnas_fast.cli import main
from isnas_fast.quality import psnr
from isnas_fast.tasks import Denoise

FAST = dict(arch="nasdip-denoise", iterations=2, width=16, quiet=True)


def _png(path, h, w, seed=0, sixteen=False):
    rng = np.random.default_rng(seed)
    base = np.linspace(0.2, 0.8, w)[None, :, None] * np.ones((h, 1, 3))
    a = np.clip(base + rng.normal(0, 0.1, (h, w, 3)), 0, 1)
    if sixteen:
        import png
        rows = (a * 65535).round().astype(np.uint16).reshape(h, w * 3)
        with open(path, "wb") as fh:
            png.Writer(w, h, bitdepth=16, greyscale=False).write(fh, rows.tolist())
    else:
        Image.fromarray((a * 255).round().astype(np.uint8)).save(path)
    return path


def test_onnx_serves_the_returned_image_at_the_input_size(tmp_path):
    pytest.importorskip("onnxruntime", reason="the ONNX model is checked with ONNX Runtime")
    from isnas_fast.export import run_onnx, to_onnx

    clean = torch.rand(1, 3, 70, 100, generator=torch.Generator().manual_seed(0))
    noisy = Denoise(25).corrupt(clean, seed=0).y
    res = isnas_fast.restore(noisy, "denoise", sigma=25, **FAST)
    assert res.tensor.shape == (1, 3, 70, 100)
    image, _ = run_onnx(to_onnx(res, tmp_path / "m.onnx"), provider="cpu")
    served = torch.from_numpy(np.asarray(image))
    assert served.shape == res.tensor.shape
    assert float(psnr(served.clamp(0, 1), res.tensor)[0]) >= 50


def test_inpainting_padding_is_unknown_and_sr_is_f_times(sample):
    x = sample[..., :77, :90]
    obs = isnas_fast.Inpaint(p=30).corrupt(x, seed=1)
    r = isnas_fast.restore(obs.y, "inpaint", mask=obs.mask[0, 0].numpy(), arch="nasdip-inpaint", iterations=2,
                           width=16, quiet=True)
    assert r.tensor.shape == (1, 3, 77, 90)
    pad = r.observation.padding
    m = r.observation.mask
    assert float(m.sum()) == float(obs.mask.sum())  # no padded pixel is known
    assert torch.equal(pad.crop(m), obs.mask)
    lr = isnas_fast.SuperResolve(2).corrupt(sample[..., :70, :90], seed=0).y  # 35x45
    r = isnas_fast.restore(lr, "sr", factor=2, arch="nasdip-sr", iterations=2, width=16, quiet=True)
    assert r.tensor.shape == (1, 3, 70, 90)


def test_cli_folder_of_photos(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _png(src / "a.png", 70, 90)
    _png(src / "b.png", 64, 64, seed=1, sixteen=True)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    argv = ["restore", str(src), "--task", "denoise", "-o", str(out), "--arch", "nasdip-denoise",
            "--iterations", "2", "--width", "16", "--json", str(tmp_path / "r.json"), "-q"]
    assert main(argv) == 1  # the unreadable file is reported, the others restored
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert Image.open(out / "a.png").size == (90, 70)
    import png
    width, height, _, info = png.Reader(filename=str(out / "b.png")).read()
    assert (width, height, info["bitdepth"]) == (64, 64, 16)  # 16-bit in, 16-bit out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [r["input"].endswith(n) for r, n in zip(rep["restored"], ("a.png", "b.png"))] == [True, True]
    assert rep["unreadable"] and rep["unreadable"][0]["input"].endswith("broken.png")
    assert all(r["noise"]["estimated"] for r in rep["restored"])
    # a rerun skips the finished outputs
    before = (out / "a.png").stat().st_mtime_ns
    assert main(argv) == 1
    assert (out / "a.png").stat().st_mtime_ns == before
    assert json.loads((tmp_path / "r.json").read_text())["restored"] == []


def test_cli_refuses_an_unwritable_output_folder_before_work(tmp_path, capsys):
    _png(tmp_path / "a.png", 64, 64)
    (tmp_path / "file").write_text("x")
    rc = main(["restore", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--task", "denoise",
               "-o", str(tmp_path / "file"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("isnas-fast: error:") and "file" in err[-1]


def test_cli_standard_input_and_output(tmp_path):
    src = _png(tmp_path / "a.png", 70, 66)
    proc = subprocess.run([sys.executable, "-m", "isnas_fast", "restore", "-", "--task", "denoise",
                           "--sigma", "20", "-o", "-", "--arch", "nasdip-denoise", "--iterations", "2",
                           "--width", "16", "-q"], input=src.read_bytes(), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    (tmp_path / "r.png").write_bytes(proc.stdout)
    assert Image.open(tmp_path / "r.png").size == (66, 70)


def test_restore_in_tiles_through_the_api(sample):
    clean = torch.cat([sample, sample.flip(-1)], dim=-1)[..., :96, :200]
    noisy = Denoise(25).corrupt(clean, seed=0).y
    logs = []
    r = isnas_fast.restore(noisy, "denoise", sigma=25, tile=128, log=logs.append, **FAST)
    assert r.tensor.shape == (1, 3, 96, 200)
    tiles = r.report()["search"]["tiles"]
    assert tiles["tile"] == 128 and tiles["count"] >= 2
    assert any("final run planned" in m and "GiB" in m or "MiB" in m for m in logs)
    again = isnas_fast.restore(noisy, "denoise", sigma=25, tile=128, **FAST)
    assert torch.equal(again.tensor, r.tensor)  # deterministic given the seed
    with pytest.raises(isnas_fast.InputError, match="tiles"):
        from isnas_fast.bundle import save_run
        save_run(r, "unused-folder")


def test_cli_max_pixels_refuses_then_allows(tmp_path, capsys):
    src = _png(tmp_path / "a.png", 70, 90)
    argv = ["restore", str(src), "--task", "denoise", "--sigma", "25", "-o", str(tmp_path / "r.png"),
            "--arch", "nasdip-denoise", "--iterations", "1", "--width", "16", "-q"]
    assert main(argv + ["--max-pixels", "6000"]) == 2
    assert "--max-pixels" in capsys.readouterr().err
    assert not (tmp_path / "r.png").exists()
    assert main(argv + ["--max-pixels", "6300"]) == 0 and (tmp_path / "r.png").exists()


def test_cli_folder_logs_each_image_without_bars_off_a_terminal(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _png(src / "a.png", 64, 64)
    _png(src / "b.png", 64, 64, seed=1)
    argv = ["restore", str(src), "--task", "denoise", "-o", str(tmp_path / "out"), "--arch", "nasdip-denoise",
            "--iterations", "2", "--width", "16"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "image 1/2" in err and "image 2/2" in err and "2 restored" in err
    assert "\r" not in err  # the image and step bars draw only on a terminal
