"""ONNX export (isnas_fast.export.onnx_export) served by ONNX Runtime (isnas_fast.export.serve).

Parity with PyTorch (train-mode BatchNorm) on ONNX Runtime's CPU provider,
for genotypes covering every upsampling primitive and every conv op.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from isnas_fast import Denoise
from isnas_fast.bundle import LoadedRun, save_run
from isnas_fast.network import batch_statistics_only
from isnas_fast.cli.deploy import register
from isnas_fast.dip import DIPSettings, fit_dip
from isnas_fast.errors import InputError
from isnas_fast.export import BatchStatNorm2d, run_onnx, to_onnx, with_batch_statistics
from isnas_fast.genotype import decode_upsample, valid_upsample_indices
from isnas_fast.network import build_network, resolve_architecture

TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pick(primitive: str, conv: str, *, kernel: int = 3, act: str = "leaky_relu", conv_first: bool = False) -> int:
    """The upsampling index of a cell, found by decoding (no hand-computed indices)."""
    for u in valid_upsample_indices():
        c = decode_upsample(u)
        if (c.primitive, c.conv, c.conv_first, c.activation) == (primitive, conv, conv_first, act) and (
                conv == "identity" and primitive != "trans_conv" or c.kernel == kernel):
            return u
    raise LookupError((primitive, conv, kernel, act, conv_first))


ALL, UP, DOWN = "1" * 25, "1111101111001110001100001", "1000011000111001111011111"
CASES = {
    "bilinear-conv": f"{pick('bilinear', 'conv', act='relu')},{UP}",
    "bicubic-trans_conv": f"{pick('bicubic', 'trans_conv', kernel=5)},{DOWN}",
    "nearest-split_stack_sum": f"{pick('nearest', 'split_stack_sum', act='none')},{ALL}",
    "bilinear-depthwise": f"{pick('bilinear', 'depthwise_conv', kernel=7)},{UP}",
    "nearest-identity": f"{pick('nearest', 'identity')},{DOWN}",
    "shuffle-then-sep_conv": f"{pick('pixel_shuffle', 'sep_conv')},{ALL}",
    "conv-then-shuffle": f"{pick('pixel_shuffle', 'conv', kernel=1, conv_first=True)},{UP}",
    "split_stack_sum-then-shuffle": f"{pick('pixel_shuffle', 'split_stack_sum', conv_first=True)},{DOWN}",
    "trans_conv-stride2": f"{pick('trans_conv', 'identity', kernel=3, act='relu')},{ALL}",
    "dip-skip": "dip-skip",
}


def trained_run(arch: str, *, task: str = "denoise", in_channels: int = 3, width: int = 16,
                size: int = 64, iterations: int = 3, seed: int = 0) -> LoadedRun:
    """A tiny network after a few DIP steps on a random 64x64 image."""
    g = torch.Generator().manual_seed(seed)
    obs = Denoise(25).corrupt(torch.rand(1, 3, size, size, generator=g), seed=0)
    torch.manual_seed(seed)
    net = build_network(arch, in_channels, 3, width, task=task)
    res = fit_dip(net, obs, DIPSettings(iterations=iterations), seed=seed, quiet=True)
    genotype = str(resolve_architecture(arch))
    return LoadedRun(network=net, z=res.z, genotype=genotype, width=128 if genotype == "dip-skip" else width,
                     in_channels=in_channels, out_channels=3, task=task, task_params={"sigma": 25.0})


def torch_train_mode(run: LoadedRun, z: torch.Tensor) -> np.ndarray:
    """The network as DIP runs it (nn.BatchNorm2d in training mode)."""
    with torch.no_grad(), batch_statistics_only(run.network) as net:
        return net(z).numpy()


def max_abs(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


# ---------------------------------------------------------------- BatchNorm semantics

@pytest.mark.parametrize("shape", [(1, 5, 7, 9), (1, 16, 2, 2), (2, 3, 33, 17)])
def test_batch_stat_norm_equals_train_mode_batchnorm(shape):
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(shape[1], eps=1e-3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
    x = torch.randn(*shape) * 3 + 1
    with torch.no_grad():
        expected = bn.train()(x)
        got = BatchStatNorm2d(bn)(x)
    assert float((got - expected).abs().max()) < 1e-5


def test_batchnorm_replacement_network_and_original_untouched():
    run = trained_run(CASES["bilinear-conv"], iterations=2)
    state = {k: v.clone() for k, v in run.network.state_dict().items()}
    copy = with_batch_statistics(run.network)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in run.network.modules()) == \
        sum(isinstance(m, BatchStatNorm2d) for m in copy.modules())
    z = torch.rand(1, 3, 96, 64) * 0.1
    with torch.no_grad():
        got = copy(z)
    assert max_abs(got, torch_train_mode(run, z)) < 1e-5
    assert run.network.training and all(torch.equal(v, run.network.state_dict()[k]) for k, v in state.items())


# ---------------------------------------------------------------- parity on ONNX Runtime

def test_cases_cover_every_primitive_and_conv_op():
    cells = [decode_upsample(int(a.split(",")[0])) for a in CASES.values() if a != "dip-skip"]
    assert {c.primitive for c in cells} == {"bilinear", "bicubic", "nearest", "pixel_shuffle", "trans_conv"}
    assert {c.conv for c in cells} == {"conv", "trans_conv", "split_stack_sum", "sep_conv", "depthwise_conv",
                                       "identity"}
    assert {c.conv_first for c in cells if c.primitive == "pixel_shuffle"} == {True, False}


@pytest.mark.parametrize("name", list(CASES))
def test_onnx_runtime_matches_pytorch(name, tmp_path):
    run = trained_run(CASES[name])
    path = to_onnx(run, tmp_path / "m.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    assert os.listdir(tmp_path) == ["m.onnx"]  # atomic write: no temporary file left
    image, provider = run_onnx(path, provider="cpu")
    assert provider == "CPUExecutionProvider"
    assert image.dtype == np.float32 and image.shape == (1, 3, 64, 64)
    assert max_abs(image, run.output()) <= TOL


def test_inpainting_dip_skip_and_32_channel_baseline(tmp_path):
    for arch, task, c_in in (("dip-skip", "inpaint", 32), ("nasdip-sr", "sr", 32)):
        run = trained_run(arch, task=task, in_channels=c_in, iterations=2)
        image, _ = run_onnx(to_onnx(run, tmp_path / f"{task}.onnx"), provider="cpu")
        assert max_abs(image, run.output()) <= TOL


# ---------------------------------------------------------------- the file itself

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    run = trained_run(CASES["shuffle-then-sep_conv"])
    bundle = save_run(run, d / "run")
    path = to_onnx(bundle, d / "model.onnx")  # from the bundle folder, as the CLI does
    np.save(d / "expected.npy", run.output().numpy())
    return run, path, d


def test_model_interface_and_metadata(exported):
    import onnxruntime as ort

    run, path, _ = exported
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == []  # no inputs: the code z is a constant
    assert "z" in {t.name for t in model.graph.initializer}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["isnas_fast.genotype"] == run.genotype and "f(z)" in meta["isnas_fast.reproduces"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs() == [] and sess.get_overridable_initializers() == []


def test_fresh_process_with_only_onnxruntime_and_numpy(exported):
    _, path, d = exported
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import onnxruntime as ort
        sess = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
        out = sess.run(None, {{}})[0]
        expected = np.load({str(d / "expected.npy")!r})
        assert "torch" not in sys.modules and "isnas_fast" not in sys.modules
        print(out.shape, float(np.abs(out - expected).max()))
    """)
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=d, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    shape, diff = proc.stdout.strip().rsplit(" ", 1)
    assert shape == "(1, 3, 64, 64)" and float(diff) <= TOL


# ---------------------------------------------------------------- errors

def test_png_passed_as_model(tmp_path):
    from isnas_fast.io import save_image

    png = save_image(torch.rand(1, 3, 8, 8), tmp_path / "x.png")
    with pytest.raises(InputError, match=r"x.png is a PNG image, not an ONNX model"):
        run_onnx(png)
    renamed = tmp_path / "x.onnx"
    png.rename(renamed)
    with pytest.raises(InputError, match="is a PNG image, not an ONNX model"):
        run_onnx(renamed)


def test_truncated_and_missing_model(exported, tmp_path):
    _, path, _ = exported
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(InputError, match="cut.onnx is not a valid ONNX model"):
        run_onnx(cut)
    with pytest.raises(InputError, match="model file not found"):
        run_onnx(tmp_path / "none.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        run_onnx(tmp_path / "empty.onnx")


def test_bad_arguments(exported, tmp_path):
    run, path, _ = exported
    with pytest.raises(InputError, match="provider must be one of"):
        run_onnx(path, provider="tpu")
    with pytest.raises(InputError, match="takes no input; run it without z"):
        run_onnx(path, z=np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(InputError, match="must end in .onnx"):
        to_onnx(run, tmp_path / "m.png")
    with pytest.raises(InputError, match="opset"):
        to_onnx(run, tmp_path / "m.onnx", opset=9)
    assert os.listdir(tmp_path) == []


def test_cuda_request_without_cuda_falls_back_to_cpu(exported):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    _, path, _ = exported
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, provider = run_onnx(path, provider="cuda")
    assert provider == "CPUExecutionProvider"
    assert any("CUDAExecutionProvider" in str(w.message) for w in caught)
    assert run_onnx(path, provider="auto")[1] == "CPUExecutionProvider"


# ---------------------------------------------------------------- CLI glue

def _cli(argv):
    parser = argparse.ArgumentParser(prog="isnas-fast")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_export_and_run(exported, tmp_path, capsys):
    from isnas_fast.io import load_image

    run, _, d = exported
    model = tmp_path / "m.onnx"
    assert _cli(["export", str(d / "run"), "--format", "onnx", "-o", str(model)]) == 0
    assert _cli(["run", str(model), "-o", str(tmp_path / "out.png"), "--provider", "cpu",
                 "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "provider: CPUExecutionProvider" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["provider"] == "CPUExecutionProvider" and rep["genotype"] == run.genotype
    png = load_image(tmp_path / "out.png")
    assert float((png - run.output()).abs().max()) <= 0.5 / 255 + TOL


def test_cli_bad_input(exported, tmp_path):
    _, path, d = exported
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    with pytest.raises(InputError, match="PNG image, not an ONNX model"):
        _cli(["run", str(png), "-o", str(tmp_path / "o.png")])
    with pytest.raises(InputError, match="must end in"):
        _cli(["run", str(path), "-o", str(tmp_path / "o.xyz")])
    with pytest.raises(InputError, match="does not match the output name"):
        _cli(["export", str(d / "run"), "--format", "pt2", "-o", str(tmp_path / "m.onnx")])
    with pytest.raises(InputError, match="run bundle not found"):
        _cli(["export", str(tmp_path / "none"), "-o", str(tmp_path / "m.onnx")])
