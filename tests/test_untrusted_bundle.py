"""Run bundles from untrusted sources: load_run checks the manifest, the files and the tensors before
it allocates or runs anything, and every refusal is one line.

Each crafted bundle is a copy of one tiny valid bundle (width 16, 64x64, no training) edited in the test.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import time
import zipfile

import pytest
import torch

import isnas_fast.bundle as bundle_mod
from isnas_fast.bundle import LoadedRun, load_run, save_run
from isnas_fast.cli import main
from isnas_fast.errors import InputError
from isnas_fast.network import build_network

ARCH = "70,1111101111001110001100001"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A valid bundle saved from an untrained width-16 network and a random 64x64 code."""
    torch.manual_seed(0)
    run = LoadedRun(network=build_network(ARCH, 3, 3, 16), z=torch.rand(1, 3, 64, 64), genotype=ARCH, width=16,
                    in_channels=3, out_channels=3, task="denoise", task_params={"sigma": 25.0})
    return save_run(run, tmp_path_factory.mktemp("untrusted") / "run")


@pytest.fixture
def bundle(valid, tmp_path):
    d = tmp_path / "bundle"
    shutil.copytree(valid, d)
    return d


def _manifest(d):
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d, m):
    (d / "manifest.json").write_text(json.dumps(m))


def _set(d, **fields):
    m = _manifest(d)
    m.update(fields)
    _write_manifest(d, m)


def _reseal(d, name):
    m = _manifest(d)
    m["files"][name]["sha256"] = hashlib.sha256((d / name).read_bytes()).hexdigest()
    _write_manifest(d, m)


def _save(obj, path):
    torch.save(obj, path)
    _reseal(path.parent, path.name)


def _refused(d, match):
    """load_run(d) raises a one-line InputError matching ``match``; returns its message."""
    with pytest.raises(InputError, match=match) as info:
        load_run(d)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 600, msg
    return msg


class _Spy:
    """Records every build_network call load_run makes (device "meta" allocates nothing)."""

    def __init__(self, monkeypatch):
        self.devices = []
        real = bundle_mod.build_network

        def spy(*args, **kwargs):
            self.devices.append(str(kwargs.get("device")))
            return real(*args, **kwargs)

        monkeypatch.setattr(bundle_mod, "build_network", spy)


def test_the_crafted_bundles_start_from_one_that_loads(bundle):
    run = load_run(bundle)
    assert (run.width, run.z.shape, run.task_params) == (16, (1, 3, 64, 64), {"sigma": 25.0})
    assert run.z.is_contiguous() and run.network.training


# ---------------------------------------------------------------- manifest fields, before any allocation

@pytest.mark.parametrize("width", [1024, 2**28, 24, -16, True, 16.0, "64"])
def test_width_out_of_range_fails_fast_without_building(bundle, monkeypatch, width):
    _set(bundle, width=width)
    spy = _Spy(monkeypatch)
    t = time.perf_counter()
    _refused(bundle, r"'width' must be a positive integer multiple of 16 from 16 to 512, got")
    assert time.perf_counter() - t < 1.0
    assert spy.devices == []  # refused before any network (even a meta one) was built


def test_wide_manifest_with_small_weights_builds_nothing_real(bundle, monkeypatch):
    # width 512 is allowed, but the weights are a width-16 network's: found on the meta device
    _set(bundle, width=512)
    spy = _Spy(monkeypatch)
    _refused(bundle, r"weights.pt does not fit the .* network: .* is \(16, 3, 3, 3\) float32, expected \(512, ")
    assert spy.devices == ["meta"]


@pytest.mark.parametrize("key, value, match", [
    ("in_channels", 10**6, "'in_channels' must be a positive integer from 1 to 64"),
    ("in_channels", 0, "'in_channels' must be a positive integer from 1 to 64"),
    ("out_channels", 2, "'out_channels' must be 1 or 3"),
    ("format_version", True, "format version True"),
    ("genotype", "7" * 5000, "'genotype' must be text"),
    ("genotype", ["70", "1111"], "'genotype' must be text"),
    ("task", ["denoise"], "manifest field 'task' must be"),
    ("sizes", {"z": [1, 3, 64, 64], "output": [1, 3, 64, True]}, "sizes.output must be 4 positive integers"),
    ("sizes", {"z": [2, 3, 64, 64], "output": [2, 3, 64, 64]}, "must hold one image"),
    ("sizes", {"z": [1, 3, 2**20, 2**20], "output": [1, 3, 2**20, 2**20]}, "at most 67108864 pixels"),
    ("sizes", {"z": [1, 3, 64, 64], "output": [1, 3, 64, 32]}, "do not agree"),
])
def test_bad_field_values(bundle, key, value, match):
    _set(bundle, **{key: value})
    _refused(bundle, match)


@pytest.mark.parametrize("task, match", [
    ({"name": "denoise", "params": [25.0]}, "task.params must be an object of the task's parameters, got list"),
    ({"name": "deblur", "params": {}}, "unknown task 'deblur'"),
    ({"name": "x" * 10_000, "params": {}}, "unknown task"),
    ({"name": "denoise", "params": {"sigma": -5}}, "sigma must be a finite number > 0"),
    ({"name": "denoise", "params": {"sigma": "25"}}, "sigma must be a number"),
    ({"name": "denoise", "params": {"factor": 4}}, "unknown parameter"),
    ({"name": "sr", "params": {"factor": 3}}, "factor must be one of 2, 4, 8"),
    ({"name": "inpaint", "params": {"p": None, "mask": "/etc/passwd", "missing_percent": 50}}, "mask 'user'"),
    ({"name": "inpaint", "params": {"p": None, "mask": "user", "missing_percent": 1e9}}, "missing_percent"),
])
def test_bad_task(bundle, task, match):
    _set(bundle, task=task)
    _refused(bundle, match)


@pytest.mark.parametrize("task, expected", [
    ({"name": "inpaint", "params": {"p": None, "mask": "user", "missing_percent": 42.5}}, "inpaint"),
    ({"name": "super-resolution", "params": {"factor": 4}}, "sr"),
    ({"name": "denoise"}, "denoise"),
])
def test_valid_tasks_are_read(bundle, task, expected):
    _set(bundle, task=task)
    run = load_run(bundle)
    assert run.task == expected and run.task_params == task.get("params", {})


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_manifest(bundle, depth):
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text[:-1].rstrip() + ', "nested": ' + "[" * depth + "]" * depth + "}")
    _refused(bundle, r"manifest.json is nested more than 32 levels deep")


def test_oversized_manifest(bundle):
    _set(bundle, padding="x" * (1 << 20))
    _refused(bundle, r"manifest.json is \d+ bytes; at most 1048576 are read")


def test_repeated_manifest_key(bundle):
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text[:-1].rstrip() + ', "width": 1024}')
    _refused(bundle, r"manifest.json is not valid JSON \(the key 'width' appears twice\)")


@pytest.mark.parametrize("name", ["../weights.pt", "/etc/passwd", "sub/x.pt", "..", "a\\b"])
def test_listed_files_must_be_plain_names(bundle, name):
    m = _manifest(bundle)
    m["files"][name] = {"sha256": "0" * 64}
    _write_manifest(bundle, m)
    _refused(bundle, "not a plain file name inside the bundle")


def test_bad_checksum_text(bundle):
    m = _manifest(bundle)
    m["files"]["z.pt"]["sha256"] = {"nested": 1}
    _write_manifest(bundle, m)
    _refused(bundle, "has no checksum for z.pt")


# ---------------------------------------------------------------- files

def test_symlinked_weights_outside_the_bundle(bundle, tmp_path):
    outside = tmp_path / "elsewhere.pt"
    shutil.move(bundle / "weights.pt", outside)  # same bytes: the checksum would match
    os.symlink(outside, bundle / "weights.pt")
    _refused(bundle, "weights.pt is a symbolic link")


def test_symlinked_manifest(bundle, tmp_path):
    shutil.move(bundle / "manifest.json", tmp_path / "m.json")
    os.symlink(tmp_path / "m.json", bundle / "manifest.json")
    _refused(bundle, "manifest.json is a symbolic link")


def test_file_that_is_a_folder(bundle):
    (bundle / "report.json").unlink()
    (bundle / "report.json").mkdir()
    _refused(bundle, "report.json is not a regular file")


def test_weights_larger_than_the_network_needs(bundle):
    size = (bundle / "weights.pt").stat().st_size
    with open(bundle / "weights.pt", "ab") as fh:
        fh.truncate(4 * size)  # still a valid checksum after resealing; only the size is wrong
    _reseal(bundle, "weights.pt")
    msg = _refused(bundle, rf"weights.pt is {4 * size} bytes; at most \d+ are read")
    cap = int(msg.split("at most ")[1].split()[0])
    assert size <= cap < 2 * size  # the cap follows the network the manifest describes


def test_oversized_report(bundle):
    (bundle / "report.json").write_text(json.dumps({"pad": "x" * (16 << 20)}))
    _reseal(bundle, "report.json")
    _refused(bundle, r"report.json is \d+ bytes; at most 16777216 are read")


def test_compressed_torch_records(bundle):
    """A deflated record would let a small file make torch.load allocate far more than its size."""
    buf = io.BytesIO()
    with zipfile.ZipFile(bundle / "z.pt") as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    (bundle / "z.pt").write_bytes(buf.getvalue())
    _reseal(bundle, "z.pt")
    _refused(bundle, "cannot read z.pt: it holds compressed records")


# ---------------------------------------------------------------- tensors

def test_stride_zero_code_claiming_a_huge_image(bundle):
    """A 1.5 KB z.pt that is an expanded view of one number; the manifest claims the expanded size."""
    side = 8192
    z = torch.zeros(1).expand(1, 3, side, side)
    torch.save(z, bundle / "z.pt")
    assert (bundle / "z.pt").stat().st_size < 2048
    m = _manifest(bundle)
    m["sizes"] = {"z": [1, 3, side, side], "output": [1, 3, side, side]}
    _write_manifest(bundle, m)
    _reseal(bundle, "z.pt")
    t = time.perf_counter()
    _refused(bundle, "z.pt holds a view")
    assert time.perf_counter() - t < 1.0


def test_stride_zero_code_of_the_right_shape(bundle):
    _save(torch.zeros(1).expand(1, 3, 64, 64), bundle / "z.pt")
    _refused(bundle, "z.pt holds a view")


def test_code_that_is_a_slice_of_a_larger_storage(bundle):
    _save(torch.zeros(2, 3, 64, 64)[1:], bundle / "z.pt")
    _refused(bundle, "z.pt holds a view")


def test_weight_that_is_a_view_of_a_larger_storage(bundle):
    state = torch.load(bundle / "weights.pt", weights_only=True)
    state["out.bias"] = torch.zeros(1000)[:3]
    _save(state, bundle / "weights.pt")
    _refused(bundle, r"weights.pt: out.bias is a view")


def test_weight_of_another_dtype(bundle):
    state = torch.load(bundle / "weights.pt", weights_only=True)
    state["out.bias"] = state["out.bias"].double()
    _save(state, bundle / "weights.pt")
    _refused(bundle, r"out.bias is \(3,\) float64, expected \(3,\) float32")


def test_extra_weight(bundle):
    state = torch.load(bundle / "weights.pt", weights_only=True)
    state["extra"] = torch.zeros(2)
    _save(state, bundle / "weights.pt")
    _refused(bundle, "does not fit the .* network: unexpected 'extra'")


def test_code_of_another_dtype(bundle):
    _save(torch.zeros(1, 3, 64, 64, dtype=torch.float64), bundle / "z.pt")
    _refused(bundle, r"z.pt holds \(1, 3, 64, 64\), expected a float32 tensor")


def test_pickled_object_beside_the_weights(bundle):
    """Weights of the right size plus a pickled object: torch.load(weights_only=True) refuses it."""
    state = torch.load(bundle / "weights.pt", weights_only=True)
    state["x"] = argparse.Namespace(a=1)
    _save(state, bundle / "weights.pt")
    _refused(bundle, "cannot read weights.pt: ")


# ---------------------------------------------------------------- CLI

def test_cli_export_of_a_bad_bundle_is_one_line_exit_2(bundle, tmp_path, capsys):
    _set(bundle, width=2**28)
    capsys.readouterr()
    rc = main(["export", str(bundle), "--format", "onnx", "-o", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("isnas-fast: error: run bundle ") and "'width' must be" in err[0]
    assert not (tmp_path / "m.onnx").exists()
