"""The clipped-noise readout (isnas_fast/dip/readout.py): against an independent float64
computation, its table against the direct computation, and end to end: a denoising run that
reads through it returns, saves and exports the same image, closer to a saturated image."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from isnas_fast.bundle import FORMAT_VERSION, load_run, save_run
from isnas_fast.device import seeded
from isnas_fast.dip import DIPSettings, EarlyStopping, RunOptions, fit_group
from isnas_fast.dip.averaging import AveragedNetwork, network_output
from isnas_fast.dip.readout import (ERROR_SHARE, apply_readout, check_readout, clipped_noise_readout,
                                    readout_reference)
from isnas_fast.dip.restarts import merge_networks
from isnas_fast.errors import InputError
from isnas_fast.network import build_network
from isnas_fast.quality import psnr
from isnas_fast.tasks import Denoise
from isnas_fast.trained import TrainedRun

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH = "64,0001010110110101110010111"


def _independent(m: float, sigma: float) -> float:
    """The readout of one estimate with SciPy: E[y] by numerical integration, its inverse by Brent's method."""
    from scipy import integrate, optimize, stats

    def mean(x: float) -> float:
        # E[clip(x + n, 0, 1)] = P(y >= 1) + integral of t over (0, 1) of the normal density
        inside, _ = integrate.quad(lambda t: t * stats.norm.pdf(t, x, sigma), 0.0, 1.0, epsabs=1e-14)
        return inside + stats.norm.sf(1.0, x, sigma)

    lo, hi = mean(0.0), mean(1.0)
    x = 0.0 if m <= lo else 1.0 if m >= hi else optimize.brentq(lambda t: mean(t) - m, 0.0, 1.0, xtol=1e-15)
    slope = stats.norm.cdf((1.0 - x) / sigma) - stats.norm.cdf(-x / sigma)
    bias, k, e2 = m - x, 1.0 / slope - 1.0, ERROR_SHARE * sigma * sigma
    denominator = bias * bias + e2 * k * k
    lam = 0.0 if denominator == 0 else min(1.0, max(0.0, (bias * bias - e2 * k) / denominator))
    return m + lam * (x - m)


@pytest.mark.parametrize("sigma", [5, 25, 75])
def test_reference_matches_an_independent_float64_computation(sigma):
    s = sigma / 255.0
    rng = np.random.default_rng(sigma)
    # estimates near both ends (where the readout acts) and a few anywhere
    ms = np.concatenate([rng.uniform(0, 3 * s, 8), rng.uniform(1 - 3 * s, 1, 8), rng.uniform(0, 1, 4)])
    got = readout_reference(torch.tensor(ms, dtype=torch.float64), s).numpy()
    want = np.array([_independent(float(m), s) for m in ms])
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_far_from_the_ends_the_readout_is_the_identity_and_at_the_ends_it_moves_outwards():
    s = 25 / 255.0
    mid = torch.linspace(6 * s, 1 - 6 * s, 101, dtype=torch.float64)
    assert torch.allclose(readout_reference(mid, s), mid, rtol=0, atol=1e-12)
    # E[y] of a black and of a white pixel
    ends = torch.tensor([s / math.sqrt(2 * math.pi), 1 - s / math.sqrt(2 * math.pi)], dtype=torch.float64)
    out = readout_reference(ends, s)
    assert out[0] < 0.5 * ends[0] and 1 - out[1] < 0.5 * (1 - ends[1])


@pytest.mark.parametrize("sigma", [5, 25, 75])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_table_read_by_interpolation_matches_the_direct_computation(sigma, dtype):
    """Bound 2e-4 absolute: the table's points are 1/4096 apart and the map's slope is at most 2,
    with kinks where its blend weight reaches 0 or 1, so linear interpolation is off by at most a
    slope change times half a spacing there (measured: at most 1.2e-4 over sigma 1-100)."""
    s = sigma / 255.0
    table = clipped_noise_readout(s)
    assert check_readout(table) is None
    g = torch.Generator().manual_seed(sigma)
    x = torch.rand(2, 3, 17, 19, generator=g, dtype=torch.float64) ** 3  # dense near 0
    x = torch.cat([x, 1 - x])
    got = apply_readout(x.to(dtype), table)
    assert got.dtype == dtype and got.shape == x.shape and torch.isfinite(got).all()
    want = readout_reference(x, s)
    assert float((got.double() - want).abs().max()) <= 2e-4
    # the table's own points are read exactly
    grid = torch.linspace(0, 1, table.shape[0])
    assert torch.equal(apply_readout(grid, table), table)


def test_check_readout_names_what_is_wrong():
    assert "float32" in check_readout(torch.zeros(5, dtype=torch.float64))
    assert "points" in check_readout(torch.zeros(1))
    assert "outside" in check_readout(torch.tensor([0.0, float("nan")]))
    assert "outside" in check_readout(torch.tensor([0.0, 1.5]))


def _binary_image() -> torch.Tensor:
    """A black disc on white, 64 px: almost every pixel saturated."""
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    return ((yy - 31.5) ** 2 + (xx - 30.0) ** 2 > 20.0 ** 2).float().expand(1, 3, 64, 64).contiguous()


def _fit(clean, readout: bool, seeds=(0,), iterations: int = 400):
    obs = Denoise(25).corrupt(clean, seed=0)
    nets = []
    for s in seeds:
        with seeded(s):
            nets.append(build_network(ARCH, 3, 3, 16, task="denoise"))
    options = RunOptions(DIPSettings(iterations), early_stopping=EarlyStopping(), clip_readout=readout)
    return fit_group(nets, obs, options, seeds=list(seeds), quiet=True)


@pytest.fixture(scope="module")
def runs():
    clean = _binary_image()
    return clean, _fit(clean, False)[0], _fit(clean, True)[0]


def test_a_run_with_the_readout_returns_its_raw_estimate_read_through_the_table(runs):
    clean, plain, read = runs
    # the same training (the readout only changes what is returned)
    assert plain.stopped_at == read.stopped_at and torch.equal(plain.output_average, read.output_average)
    assert isinstance(read.network, AveragedNetwork) and read.network.readout is not None
    assert plain.network.readout is None
    table = clipped_noise_readout(25 / 255.0)
    assert torch.equal(read.network.readout, table)
    assert torch.equal(read.output, apply_readout(plain.output, table).clamp(0, 1))
    assert torch.equal(read.output, network_output(read.network, read.z).clamp(0, 1))
    assert "clipped-noise readout" in read.averaged_over
    # on a saturated image the bias of clip(x + n) is most of the error
    gain = float(psnr(read.output, clean)[0] - psnr(plain.output, clean)[0])
    assert gain > 3.0, gain


def test_bundle_and_onnx_serve_the_read_image(runs, tmp_path):
    clean, _, read = runs
    # The run's first two members, reweighted, with its readout: the exported graph
    # holds every member, and two show the readout served as well as sixteen.
    net = read.network
    assert len(net.members) > 2
    two = AveragedNetwork(list(net.members)[:2], net.offsets[:2], net.coefficients[:2] / net.coefficients[:2].sum(),
                          readout=net.readout)
    with torch.no_grad():
        output = network_output(two, read.z).clamp(0, 1)
    assert float((output - read.output).abs().max()) > 0  # another network than the run's
    read = dataclasses.replace(read, network=two, output=output)
    run = TrainedRun(network=two, z=read.z, genotype=ARCH, width=16, in_channels=3, out_channels=3,
                     task="denoise", task_params={"sigma": 25.0}, dip=read)
    path = save_run(run, tmp_path / "run", ground_truth=clean)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["readout_points"] == read.network.readout.shape[0]
    loaded = load_run(path)
    assert torch.equal(loaded.network.readout, read.network.readout)
    assert float((loaded.output() - read.output.cpu()).abs().max()) <= 1e-6
    pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")
    import onnxruntime as ort

    from isnas_fast.export.onnx_export import to_onnx

    model = to_onnx(run, tmp_path / "m.onnx")
    (image,) = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {})
    assert np.isfinite(image).all()
    # ONNX Runtime's convolutions sum in another order: 1e-4 as for every exported network
    assert float(np.abs(image - read.output.cpu().numpy()).max()) <= 1e-4


def test_a_bundle_with_a_bad_readout_is_refused(runs, tmp_path):
    import hashlib

    clean, _, read = runs
    run = TrainedRun(network=read.network, z=read.z, genotype=ARCH, width=16, in_channels=3, out_channels=3,
                     task="denoise", task_params={"sigma": 25.0}, dip=read)
    path = save_run(run, tmp_path / "run")
    good = json.loads((path / "manifest.json").read_text())

    def with_manifest(**fields):
        (path / "manifest.json").write_text(json.dumps({**good, **fields}))

    with_manifest(readout_points=10 ** 9)
    with pytest.raises(InputError, match="readout_points"):
        load_run(path)
    with_manifest(readout_points=17)  # the stored table has another length
    with pytest.raises(InputError, match="readout"):
        load_run(path)
    with_manifest(task={"name": "inpaint", "params": {"p": 50.0}})
    with pytest.raises(InputError, match="readout_points"):
        load_run(path)
    # a table holding NaN, with a matching checksum
    state = torch.load(path / "weights.pt", weights_only=True)
    state["readout"][3] = float("nan")
    torch.save(state, path / "weights.pt")
    data = (path / "weights.pt").read_bytes()
    files = dict(good["files"])
    files["weights.pt"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    with_manifest(files=files)
    with pytest.raises(InputError, match="outside"):
        load_run(path)


def test_restarts_merge_reads_the_mean_once():
    clean = _binary_image()
    a, b = _fit(clean, True, seeds=(0, 1), iterations=120)
    merged = merge_networks([a.network, b.network], [a.z, b.z])
    assert torch.equal(merged.readout, a.network.readout)
    raw = [AveragedNetwork(list(r.network.members), r.network.offsets, r.network.coefficients) for r in (a, b)]
    mean = 0.5 * (network_output(raw[0], a.z) + network_output(raw[1], b.z))
    want = apply_readout(mean, a.network.readout)
    assert float((network_output(merged, a.z) - want).abs().max()) <= 1e-6
