"""The image a DIP run returns is what its saved and exported network computes.

A run's network is an :class:`~isnas_fast.dip.averaging.AveragedNetwork`
(block-averaged weights, each member on one of its noisy inputs); its output
on the stored code is the returned image, in PyTorch, from a bundle and on
ONNX Runtime.  The ONNX model has no inputs and loads without warnings.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from isnas_fast.bundle import FORMAT_VERSION, LoadedRun, load_run, save_run
from isnas_fast.device import seeded
from isnas_fast.dip import DIPSettings, EarlyStopping, fit_dip
from isnas_fast.dip.averaging import AveragedNetwork, BlockAverages, network_output
from isnas_fast.network import build_network
from isnas_fast.quality import psnr
from isnas_fast.tasks import Denoise
from isnas_fast.trained import TrainedRun

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH = "64,0001010110110101110010111"


def _fit(early_stopping=None, iterations=24, served=True):
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 64, 64, generator=g)
    obs = Denoise(25).corrupt(clean, seed=0)
    with seeded(0):
        net = build_network(ARCH, 3, 3, 16, task="denoise")
    res = fit_dip(net, obs, DIPSettings(iterations), seed=0, quiet=True, early_stopping=early_stopping,
                  served=served)
    return res, clean


def _run(res) -> TrainedRun:
    return TrainedRun(network=res.network, z=res.z, genotype=ARCH, width=16, in_channels=3, out_channels=3,
                      task="denoise", task_params={"sigma": 25.0}, dip=res)


def _psnr(a, b) -> float:
    return float(psnr(torch.as_tensor(np.asarray(a)).float().clamp(0, 1), b.float().clamp(0, 1))[0])


@pytest.fixture(scope="module")
def window_run():
    """A run whose discrepancy detector picks a window (it may not fire in 24 steps: the
    window of smallest residual is returned then)."""
    return _fit(EarlyStopping(window=8, patience=100))


def test_returned_image_is_the_averaged_networks_output(window_run):
    res, _ = window_run
    assert isinstance(res.network, AveragedNetwork) and len(res.network.members) >= 2
    assert float(res.network.coefficients.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(res.output, network_output(res.network, res.z).clamp(0, 1))
    assert torch.equal(_run(res).output().clamp(0, 1), res.output.cpu())
    # the raw-output average over the same steps is kept beside it, and differs from it
    assert res.output_average is not None and not torch.equal(res.output_average, res.output)
    assert "window" in res.averaged_over


def test_without_a_detector_the_ema_is_served_too():
    res, _ = _fit(None, iterations=12)
    assert isinstance(res.network, AveragedNetwork)
    assert torch.equal(res.output, network_output(res.network, res.z).clamp(0, 1))
    assert "exponential moving average (0.99)" in res.averaged_over


def test_served_false_keeps_the_raw_output_average_and_the_last_network():
    res, _ = _fit(None, iterations=6, served=False)
    assert not isinstance(res.network, AveragedNetwork)
    assert torch.equal(res.output, res.output_average)


def test_block_averages_window_and_ema_coefficients():
    lin = nn.Linear(1, 1, bias=False)
    avg = BlockAverages(lin, block=3, keep=6)
    for it in range(1, 11):
        with torch.no_grad():
            lin.weight.fill_(float(it))  # the weights step ``it`` starts from
        avg.add(it, torch.full((1, 1, 1, 1), float(it)))
    # blocks are aligned to multiples of 3: [4-6], [7-9], [10]; [1-3] ended 6 or more steps ago
    assert [(m.start, m.count) for m in avg.blocks] == [(4, 3), (7, 3), (10, 1)]
    members, coefs = avg.window(5)  # steps 6-10: one step of [4-6], all of [7-9] and [10]
    assert [m.start for m in members] == [4, 7, 10]
    assert coefs == pytest.approx([1 / 5, 3 / 5, 1 / 5])
    assert [float(m.sums[0].sum()) / m.count for m in members] == pytest.approx([5.0, 8.0, 10.0])
    assert [float(m.input) for m in members] == [4.0, 7.0, 10.0]  # each block's first input
    _, coefs = avg.ema(0.5)
    raw = [sum(0.5 ** (10 - i) for i in r) for r in (range(4, 7), range(7, 10), range(10, 11))]
    assert coefs == pytest.approx([c / sum(raw) for c in raw])
    # the last block is frozen in what window() returns: later steps do not change it
    with torch.no_grad():
        lin.weight.fill_(11.0)
    avg.add(11, torch.zeros(1, 1, 1, 1))
    assert float(members[-1].sums[0].sum()) == 10.0 and members[-1].count == 1


def test_bundle_reproduces_the_returned_image(window_run, tmp_path):
    res, clean = window_run
    path = save_run(_run(res), tmp_path / "run", ground_truth=clean)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["members"] == len(res.network.members)
    rec = manifest["reproduction"]
    assert "returned" in rec["exported_output"] and rec["max_abs_diff_final_vs_restored"] == 0.0
    loaded = load_run(path)
    assert isinstance(loaded.network, AveragedNetwork)
    assert _psnr(loaded.output(), res.output.cpu()) >= 50.0


def test_format_version_1_bundles_still_load(tmp_path):
    """A version 1 bundle holds one plain network and reproduces its f(z)."""
    with seeded(1):
        net = build_network(ARCH, 3, 3, 16, task="denoise")
    z = torch.rand(1, 3, 64, 64) * 0.1
    run = TrainedRun(network=net, z=z, genotype=ARCH, width=16, in_channels=3, out_channels=3, task="denoise",
                     task_params={"sigma": 25.0})
    path = save_run(run, tmp_path / "v1")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["members"] is None
    manifest["format_version"] = 1
    del manifest["members"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_run(path)
    assert isinstance(loaded, LoadedRun) and not isinstance(loaded.network, AveragedNetwork)
    assert torch.equal(loaded.output(), run.output())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="reads versions 1, 2, 3, 4"):
        load_run(path)


def _session_log(model_path, capfd):
    """Open an ONNX Runtime session with warnings logged; returns (session, stderr, Python warnings)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 2  # warnings and errors
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sess = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    return sess, capfd.readouterr().err, [str(w.message) for w in caught]


def test_onnx_model_has_no_inputs_loads_quietly_and_serves_the_returned_image(window_run, tmp_path, capfd):
    pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")
    import onnx
    from onnx import helper, numpy_helper

    from isnas_fast.export.onnx_export import to_onnx

    res, _ = window_run
    path = to_onnx(_run(res), tmp_path / "m.onnx")
    capfd.readouterr()
    sess, err, py = _session_log(path, capfd)
    assert "appears in graph inputs" not in err and "[W:" not in err, err
    assert py == []
    assert sess.get_inputs() == [] and sess.get_overridable_initializers() == []
    (image,) = sess.run(None, {})
    assert _psnr(image, res.output.cpu()) >= 50.0
    # the capture does see the warning an initializer that is also a graph input gives
    model = onnx.load(str(path))
    z = next(t for t in model.graph.initializer if t.name == "z")
    model.graph.input.append(helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT,
                                                           list(numpy_helper.to_array(z).shape)))
    onnx.save(model, str(tmp_path / "old.onnx"))
    _, err, _ = _session_log(tmp_path / "old.onnx", capfd)
    assert "appears in graph inputs" in err


def test_export_help_promises_no_input():
    import argparse

    from isnas_fast.cli.deploy import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["export"].format_help()
    assert "no input" in text and "optional input z" not in text
