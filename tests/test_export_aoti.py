"""AOTInductor package (isnas_fast.export.aoti) and the C++ runner (export/cpp/runner.cpp).

One tiny compile per session (width 16, 64x64; about 1-2 minutes on 2 CPU
cores), made through the CLI, shared by every test here.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from isnas_fast import Denoise
from isnas_fast.bundle import LoadedRun, save_run
from isnas_fast.cli.deploy import register
from isnas_fast.dip import DIPSettings, fit_dip
from isnas_fast.errors import InputError
from isnas_fast.export import load_pt2, run_pt2, to_pt2
from isnas_fast.io import load_image
from isnas_fast.dip.averaging import AveragedNetwork
from isnas_fast.dip.readout import clipped_noise_readout
from isnas_fast.network import build_network

TOL = 1e-4
ROOT = Path(__file__).resolve().parents[1]
ARCH = "265,1010100101000111101111010"  # trans_conv 1x1 -> pixel shuffle, relu; skips both ways


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cli(argv):
    parser = argparse.ArgumentParser(prog="isnas-fast")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    d = tmp_path_factory.mktemp("pt2")
    g = torch.Generator().manual_seed(0)
    obs = Denoise(150).corrupt(torch.rand(1, 3, 64, 64, generator=g), seed=0)
    torch.manual_seed(0)
    net = build_network(ARCH, 3, 3, 16)
    res = fit_dip(net, obs, DIPSettings(iterations=3), quiet=True)
    # served as a denoise is: one member read through the clipped-noise readout (at sigma 150 it
    # moves every value, not only those near 0 and 1)
    net = AveragedNetwork([net], torch.zeros_like(res.z), torch.ones(1), clipped_noise_readout(150 / 255))
    run = LoadedRun(network=net, z=res.z, genotype=ARCH, width=16, in_channels=3, out_channels=3,
                    task="denoise", task_params={"sigma": 150.0})
    save_run(run, d / "run")
    expected = run.output()
    np.save(d / "expected.npy", expected.numpy())
    path = d / "model.pt2"
    assert _cli(["export", str(d / "run"), "--format", "pt2", "-o", str(path), "--quiet"]) == 0
    return path, expected, d


def test_package_matches_pytorch(package):
    path, expected, d = package
    assert sorted(p.name for p in d.iterdir()) == ["expected.npy", "model.pt2", "run"]  # no temp files
    out = run_pt2(path)
    assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32
    assert float((out - expected).abs().max()) <= TOL
    meta = load_pt2(path).get_metadata()
    assert meta["isnas_fast.genotype"] == ARCH and "clipped-noise readout" in meta["isnas_fast.reproduces"]


def test_fresh_process_with_only_torch(package):
    path, _, d = package
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import torch
        model = torch._inductor.aoti_load_package({str(path)!r})
        out = model()                      # z is baked in: no input
        out = out[0] if isinstance(out, (list, tuple)) else out
        expected = np.load({str(d / "expected.npy")!r})
        assert not any(m.startswith("isnas_fast") for m in sys.modules)
        print(tuple(out.shape), float(np.abs(out.numpy() - expected).max()))
    """)
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=300, cwd=d,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    shape, diff = proc.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert shape == "(1, 3, 64, 64)" and float(diff) <= TOL


def test_cli_run_pt2(package, tmp_path, capsys):
    path, expected, _ = package
    assert _cli(["run", str(path), "-o", str(tmp_path / "o.png"), "--json", str(tmp_path / "r.json")]) == 0
    assert "provider: TorchInductor AOT (cpu)" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["format"] == "pt2"
    assert float((load_image(tmp_path / "o.png") - expected).abs().max()) <= 0.5 / 255 + TOL


def test_bad_packages(package, tmp_path):
    path, _, _ = package
    (tmp_path / "x.pt2").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(InputError, match="is a PNG image, not a .pt2 TorchInductor package"):
        run_pt2(tmp_path / "x.pt2")
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="not a .pt2 TorchInductor package"):
        run_pt2(cut)
    with pytest.raises(InputError, match="package file not found"):
        run_pt2(tmp_path / "none.pt2")
    with pytest.raises(InputError, match="must end in .pt2"):
        to_pt2(tmp_path / "none", tmp_path / "m.onnx")


# ---------------------------------------------------------------- C++ runner

def _cxx() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    cmake = shutil.which("cmake")
    if cmake is None or _cxx() is None:
        pytest.skip("C++ runner not built: no " + ("cmake" if cmake is None else "C++ compiler") + " on PATH")
    build = tmp_path_factory.mktemp("cpp-build")
    cfg = subprocess.run([cmake, "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                          f"-DPython3_EXECUTABLE={sys.executable}"], capture_output=True, text=True, timeout=300)
    assert cfg.returncode == 0, cfg.stdout[-3000:] + cfg.stderr[-3000:]
    bld = subprocess.run([cmake, "--build", str(build), "-j", "2"], capture_output=True, text=True, timeout=600)
    assert bld.returncode == 0, bld.stdout[-3000:] + bld.stderr[-3000:]
    exe = build / "isnas_fast_runner"
    assert exe.is_file()
    return exe


def test_cpp_runner_matches_python(runner, package, tmp_path):
    from PIL import Image

    path, expected, _ = package
    proc = subprocess.run([str(runner), str(path), str(tmp_path / "o.ppm"), str(tmp_path / "o.npy")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    raw = np.load(tmp_path / "o.npy")
    assert raw.dtype == np.float32 and raw.shape == (1, 3, 64, 64)
    assert float(np.abs(raw - expected.numpy()).max()) <= TOL
    with Image.open(tmp_path / "o.ppm") as img:
        assert img.format == "PPM" and img.mode == "RGB"
        pixels = np.asarray(img).astype(np.int16)
    ref = (expected[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.int16)
    assert np.abs(pixels - ref).max() <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npy", "o.ppm"]


def test_cpp_runner_errors(runner, package, tmp_path):
    path, _, _ = package
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    proc = subprocess.run([str(runner), str(png), str(tmp_path / "o.ppm")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot load") and proc.stderr.count("\n") == 1
    proc = subprocess.run([str(runner), str(path), str(tmp_path / "o.pgm")], capture_output=True, text=True)
    assert proc.returncode == 2 and "outputs 3 channel(s)" in proc.stderr
    proc = subprocess.run([str(runner), str(tmp_path / "none.pt2"), str(tmp_path / "o.ppm")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert not (tmp_path / "o.ppm").exists() and not (tmp_path / "o.pgm").exists()
