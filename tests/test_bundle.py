"""Run bundles (isnas_fast.bundle): round trip, atomic writes, damaged bundles."""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil

import pytest
import torch

import isnas_fast
from isnas_fast.bundle import FORMAT_VERSION, LoadedRun, as_trained_run, export_report, load_run, save_run
from isnas_fast.network import batch_statistics_only
from isnas_fast.errors import InputError

ARCH = "70,1111101111001110001100001"  # bicubic -> conv 5x5, relu; same-scale and upward skips


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 64, 64, generator=g)
    noisy = isnas_fast.Denoise(25).corrupt(clean, seed=0).y
    return clean, noisy


@pytest.fixture(scope="module")
def result(images):
    clean, noisy = images
    return isnas_fast.restore(noisy, "denoise", sigma=25, arch=ARCH, iterations=3, width=16, quiet=True,
                              ground_truth=clean)


@pytest.fixture(scope="module")
def bundle(result, images, tmp_path_factory):
    return save_run(result, tmp_path_factory.mktemp("bundle") / "run", ground_truth=images[0])


def _copy(bundle, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def _reseal(d, name):
    """Update the manifest checksum of ``name`` (simulates a consistent but wrong bundle)."""
    import hashlib

    m = json.loads((d / "manifest.json").read_text())
    m["files"][name]["sha256"] = hashlib.sha256((d / name).read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(m))


# ---------------------------------------------------------------- round trip

def test_round_trip_reproduces_final_output(result, bundle):
    assert sorted(os.listdir(bundle)) == ["manifest.json", "report.json", "weights.pt", "z.pt"]
    run = load_run(bundle)
    assert isinstance(run, LoadedRun)
    assert (run.genotype, run.width, run.in_channels, run.out_channels) == (ARCH, 16, 3, 3)
    assert run.task == "denoise" and run.task_params == {"sigma": 25.0}
    assert run.network.training
    assert torch.equal(run.z, result.dip.z.cpu())
    with torch.no_grad(), batch_statistics_only(result.dip.network) as net:
        expected = net(result.dip.z)
    assert float((run.output() - expected).abs().max()) == 0.0
    assert run.report == json.loads(json.dumps(result.report()))


def test_manifest_contents(bundle, result):
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["format"] == "isnas-fast-run" and m["format_version"] == FORMAT_VERSION == 5
    assert m["members"] == len(result.dip.network.members)
    assert m["sizes"] == {"z": [1, 3, 64, 64], "output": [1, 3, 64, 64]}
    assert set(m["files"]) == {"weights.pt", "z.pt", "report.json"}
    assert all(len(f["sha256"]) == 64 for f in m["files"].values())
    rep = m["reproduction"]
    # the exported model reproduces the returned image: both are described and compared
    assert "the image the run returned" in rep["exported_output"] and "returned image" in rep["restored_image"]
    assert rep["psnr_restored"] == result.report()["psnr"]
    assert isinstance(rep["psnr_final_output"], float) and rep["max_abs_diff_final_vs_restored"] == 0
    assert rep["psnr_final_output"] == pytest.approx(rep["psnr_restored"], abs=1e-3)
    assert export_report(load_run(bundle)) == rep


def test_without_ground_truth_no_final_psnr(images, tmp_path):
    res = isnas_fast.restore(images[1], "denoise", arch=ARCH, iterations=2, width=16, quiet=True)
    rep = export_report(load_run(save_run(res, tmp_path / "r")))
    assert "psnr_final_output" not in rep and "psnr_restored" not in rep
    assert "psnr_final_vs_restored" in rep


def test_ground_truth_shape_checked(result, tmp_path):
    with pytest.raises(InputError, match="ground truth has shape"):
        save_run(result, tmp_path / "r", ground_truth=torch.rand(1, 3, 32, 32))
    assert os.listdir(tmp_path) == []


def test_padded_input_is_served_at_its_own_size(tmp_path):
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(1, 3, 72, 90, generator=g)  # restore pads to 96x96 and crops back
    noisy = isnas_fast.Denoise(25).corrupt(clean, seed=0).y
    res = isnas_fast.restore(noisy, "denoise", sigma=25, arch=ARCH, iterations=2, width=16, quiet=True,
                             ground_truth=clean)
    loaded = load_run(save_run(res, tmp_path / "r", ground_truth=clean))
    assert loaded.crop == (12, 3, 72, 90) and loaded.z.shape[-2:] == (96, 96)
    rep = export_report(loaded)
    final = as_trained_run(res).output()
    assert final.shape == (1, 3, 72, 90) and torch.equal(loaded.output(), final)
    expected = isnas_fast.psnr(final.clamp(0, 1), clean)
    assert rep["psnr_final_output"] == pytest.approx(float(expected[0]), abs=1e-3)
    assert rep["psnr_restored"] == res.report()["psnr"]


def test_output_leaves_running_stats_alone(bundle):
    run = load_run(bundle)
    before = {k: v.clone() for k, v in run.network.state_dict().items()}
    run.output()
    after = run.network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.track_running_stats for m in run.network.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_baseline_with_32_channel_code(images, tmp_path):
    res = isnas_fast.restore(images[1], "denoise", arch="nasdip-denoise", iterations=2, width=16, quiet=True)
    run = load_run(save_run(res, tmp_path / "r"))
    assert run.in_channels == 32 and run.z.shape == (1, 32, 64, 64)
    assert run.genotype == "158,1111101111001110001100001"
    assert torch.allclose(run.output(), as_trained_run(res).output(), atol=0, rtol=0)


# ---------------------------------------------------------------- writing

def test_refuses_non_empty_folder_then_overwrites(result, tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty; pass overwrite=True"):
        save_run(result, target)
    with pytest.raises(InputError, match="not a run bundle"):
        save_run(result, target, overwrite=True)  # never deletes a folder that is not a bundle
    assert (target / "keep.txt").read_text() == "x"
    shutil.rmtree(target)
    save_run(result, target)
    first = (target / "manifest.json").read_text()
    with pytest.raises(InputError, match="not empty"):
        save_run(result, target)
    save_run(result, target, overwrite=True)
    assert (target / "manifest.json").read_text() == first
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no temporary folders left behind


def test_empty_folder_is_used(result, tmp_path):
    (tmp_path / "run").mkdir()
    save_run(result, tmp_path / "run")
    assert load_run(tmp_path / "run").genotype == ARCH


def test_target_is_a_file_or_parent_missing(result, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        save_run(result, tmp_path / "f")
    with pytest.raises(InputError, match="output folder does not exist"):
        save_run(result, tmp_path / "nope" / "run")


# ---------------------------------------------------------------- damaged bundles

def test_missing_file(bundle, tmp_path):
    d = _copy(bundle, tmp_path)
    (d / "weights.pt").unlink()
    with pytest.raises(InputError, match=r"is damaged: weights.pt is missing"):
        load_run(d)


def test_missing_manifest(bundle, tmp_path):
    d = _copy(bundle, tmp_path)
    (d / "manifest.json").unlink()
    with pytest.raises(InputError, match="not a run bundle: manifest.json is missing"):
        load_run(d)


def test_corrupt_manifest_json(bundle, tmp_path):
    d = _copy(bundle, tmp_path)
    (d / "manifest.json").write_text((d / "manifest.json").read_text()[:-40])
    with pytest.raises(InputError, match="manifest.json is not valid JSON"):
        load_run(d)


def test_tampered_weights(bundle, tmp_path):
    d = _copy(bundle, tmp_path)
    data = bytearray((d / "weights.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(InputError, match="weights.pt does not match its sha256"):
        load_run(d)


def test_truncated_z(bundle, tmp_path):
    d = _copy(bundle, tmp_path)
    (d / "z.pt").write_bytes((d / "z.pt").read_bytes()[:100])
    with pytest.raises(InputError, match="z.pt does not match its sha256"):
        load_run(d)
    _reseal(d, "z.pt")
    with pytest.raises(InputError, match="cannot read z.pt"):
        load_run(d)


def test_weights_of_another_network(bundle, tmp_path):
    d = _copy(bundle, tmp_path)
    state = torch.load(d / "weights.pt", weights_only=True)
    key = next(k for k in state if k.endswith("out.weight"))  # the averaged network's first member's
    state[key] = torch.zeros(3, 32, 1, 1)
    torch.save(state, d / "weights.pt")
    _reseal(d, "weights.pt")
    with pytest.raises(InputError, match="weights.pt does not fit the .* network: .*out.weight"):
        load_run(d)


def test_pickled_code_is_refused(bundle, tmp_path):
    d = _copy(bundle, tmp_path)
    torch.save({"x": argparse.Namespace(a=1)}, d / "weights.pt")  # not plain tensors
    _reseal(d, "weights.pt")
    with pytest.raises(InputError, match="cannot read weights.pt"):
        load_run(d)


def test_wrong_z_shape(bundle, tmp_path):
    d = _copy(bundle, tmp_path)
    torch.save(torch.zeros(1, 3, 32, 32), d / "z.pt")
    _reseal(d, "z.pt")
    with pytest.raises(InputError, match=r"z.pt holds \(1, 3, 32, 32\), expected"):
        load_run(d)


def test_bad_report_json(bundle, tmp_path):
    d = _copy(bundle, tmp_path)
    (d / "report.json").write_text("{not json")
    _reseal(d, "report.json")
    with pytest.raises(InputError, match="report.json is not valid JSON"):
        load_run(d)


@pytest.mark.parametrize("key, value, message", [
    ("genotype", "999,1111", "bad genotype"),
    ("width", 0, "'width' must be a positive integer"),
    ("format_version", 99, "format version 99"),
    ("format", "other", "not an isnas-fast run manifest"),
    ("in_channels", 4, "do not agree"),
])
def test_bad_manifest_fields(bundle, tmp_path, key, value, message):
    d = _copy(bundle, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m[key] = value
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match=message):
        load_run(d)


def test_not_a_bundle(tmp_path):
    with pytest.raises(InputError, match="run bundle not found"):
        load_run(tmp_path / "nothing")
    (tmp_path / "f.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(InputError, match="must be a folder"):
        load_run(tmp_path / "f.png")


def test_error_messages_are_one_line(bundle, tmp_path):
    d = _copy(bundle, tmp_path)
    state = torch.load(d / "weights.pt", weights_only=True)
    del state[next(k for k in state if k.endswith("out.bias"))]
    buf = io.BytesIO()
    torch.save(state, buf)
    (d / "weights.pt").write_bytes(buf.getvalue())
    _reseal(d, "weights.pt")
    with pytest.raises(InputError) as info:
        load_run(d)
    assert "\n" not in str(info.value) and "out.bias" in str(info.value)
