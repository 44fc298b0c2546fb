"""Blends: the final run's image averaged with a fixed partner network's (DIP-skip), served as one network."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from isnas_fast import restore
from isnas_fast.bundle import FORMAT_VERSION, load_run, save_run
from isnas_fast.device import seeded
from isnas_fast.dip import BlendedNetwork, DIPSettings, EarlyStopping, blend_results, fit_dip
from isnas_fast.dip.averaging import network_output
from isnas_fast.errors import InputError
from isnas_fast.network import build_network
from isnas_fast.search import preset
from isnas_fast.search.settings import BLEND_WEIGHT
from isnas_fast.tasks import Denoise

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCHS = ("64,0001010110110101110010111", "158,1111101111001110001100001")
TINY = dict(iterations=20, candidates=2, cohort_iterations=10, quiet=True)


def _fit(arch: str, in_ch: int, seed: int, obs):
    with seeded(seed):
        net = build_network(arch, in_ch, 3, 16, task="denoise")
    return fit_dip(net, obs, DIPSettings(14), seed=seed, quiet=True,
                   early_stopping=EarlyStopping(window=6, patience=100))


@pytest.fixture(scope="module")
def two_runs():
    g = torch.Generator().manual_seed(5)
    obs = Denoise(25).corrupt(torch.rand(1, 3, 64, 64, generator=g), seed=0)
    return obs, [_fit(ARCHS[0], 3, 1, obs), _fit(ARCHS[1], 8, 2, obs)]


@pytest.fixture(scope="module")
def blended_restore():
    g = torch.Generator().manual_seed(21)
    clean = torch.rand(1, 3, 64, 64, generator=g)
    noisy = Denoise(25).corrupt(clean, seed=1).y
    res = restore(noisy, "denoise", sigma=25, ground_truth=clean, blend="dip-skip", restarts=2, seed=3, **TINY)
    return noisy, clean, res


def test_blended_network_is_the_weighted_sum_of_its_parts(two_runs):
    _, runs = two_runs
    assert runs[0].z.shape[1] != runs[1].z.shape[1]  # parts on codes of their own
    w = torch.tensor([0.7, 0.3])
    net = BlendedNetwork([r.network for r in runs], [runs[1].z], w)
    fast = network_output(net, runs[0].z)
    assert torch.isfinite(fast).all()
    # against an independent float64 sum of every member of each part on its own input
    ref = torch.zeros_like(fast, dtype=torch.float64)
    for r, wk in zip(runs, w.tolist()):
        for j, m in enumerate(r.network.members):
            x = network_output(m, r.z + r.network.offsets[j:j + 1])
            ref += x.double() * float(r.network.coefficients[j]) * wk
    assert float((fast.double() - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    with pytest.raises(ValueError):
        BlendedNetwork([runs[0].network], [])
    with pytest.raises(ValueError):
        BlendedNetwork([r.network for r in runs], [runs[1].z], torch.tensor([1.0]))


def test_blend_results_returns_the_served_image_and_lists_each_run(two_runs):
    obs, runs = two_runs
    res = blend_results(runs, ["a", "b"], [0.75, 0.25], psnr=lambda out: float(Denoise.psnr(out, obs.y)[0]))
    assert torch.equal(res.output, network_output(res.network, res.z).clamp(0, 1))
    assert torch.equal(res.z, runs[0].z)
    assert [b["architecture"] for b in res.blended] == ["a", "b"]
    assert [b["weight"] for b in res.blended] == [0.75, 0.25]
    assert res.psnr_at_stop == pytest.approx(float(Denoise.psnr(res.output, obs.y)[0]))
    with pytest.raises(ValueError):
        blend_results(runs, ["a"], [0.5, 0.5])


def test_restore_blends_the_pick_with_dip_skip_as_arch_dip_skip_restores_it(blended_restore):
    noisy, clean, res = blended_restore
    run = res.run
    assert isinstance(run.network, BlendedNetwork) and run.partner is not None
    assert run.partner.genotype == "dip-skip" and run.partner.width == 128
    assert [round(float(v), 6) for v in run.network.weights] == [round(1 - BLEND_WEIGHT, 6), round(BLEND_WEIGHT, 6)]
    rep = res.report()
    assert [b["architecture"] for b in rep["blended"]] == [str(res.genotype), "dip-skip"]
    assert len(rep["restarts"]) == 2
    # the partner is exactly the run `--arch dip-skip` makes of this image, seed and restarts
    alone = restore(noisy, "denoise", sigma=25, arch="dip-skip", seed=3, iterations=20, restarts=2, quiet=True)
    assert torch.equal(network_output(run.partner.network, run.partner.z).clamp(0, 1)[..., :64, :64],
                       alone.tensor)
    # the returned image is the weighted mean of the pick's and the partner's images
    own = network_output(run.network.parts[0], run.z)
    other = network_output(run.network.parts[1], run.network.code_1)
    mean = (own * (1 - BLEND_WEIGHT) + other * BLEND_WEIGHT).clamp(0, 1)
    assert float((res.tensor - mean).abs().max()) <= 1e-6
    assert rep["psnr"] == pytest.approx(float(Denoise.psnr(res.tensor, clean)[0]), abs=1e-3)


def test_bundle_serves_the_blend_and_refuses_bad_weights(blended_restore, tmp_path, reseal_weights):
    _, _, res = blended_restore
    d = save_run(res, tmp_path / "b")
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["partner"]["genotype"] == "dip-skip" and manifest["partner"]["width"] == 128
    loaded = load_run(d)
    assert isinstance(loaded.network, BlendedNetwork) and loaded.partner.genotype == "dip-skip"
    assert torch.equal(loaded.output(), res.tensor)
    assert manifest["reproduction"]["max_abs_diff_final_vs_restored"] == 0.0
    assert "blended" in manifest["reproduction"]["exported_output"]
    # saved again from the loaded run, it is the same blend
    again = load_run(save_run(loaded, tmp_path / "again"))
    assert torch.equal(again.output(), res.tensor)

    # weights that do not sum to 1, rewritten with a matching checksum: refused by name
    bad = tmp_path / "bad"
    save_run(res, bad)
    state = torch.load(bad / "weights.pt", weights_only=True)
    state["weights"] = torch.tensor([0.9, 0.9])
    m = reseal_weights(bad, state)
    with pytest.raises(InputError, match="weights must be finite, non-negative and sum to 1"):
        load_run(bad)
    # a partner that claims other input channels: the weights file is larger than such a network's
    m["partner"]["in_channels"] = 16
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="at most [0-9]+ are read for it"):
        load_run(bad)
    m["partner"] = {"genotype": "dip-skip", "width": 128, "in_channels": 32, "members": 10 ** 6}
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="partner.members"):
        load_run(bad)


def test_onnx_export_serves_the_blend(blended_restore, tmp_path):
    pytest.importorskip("onnx", reason="the ONNX exporter needs the onnx package (the export extra)")
    pytest.importorskip("onnxruntime", reason="serving the model needs ONNX Runtime (the export extra)")
    from isnas_fast.export import run_onnx, to_onnx
    _, _, res = blended_restore
    path = to_onnx(res, tmp_path / "m.onnx")
    image, _ = run_onnx(path, provider="cpu")
    served = torch.from_numpy(image)
    # float32 ONNX Runtime against float32 PyTorch: the same ops, another kernel order
    assert torch.isfinite(served).all()
    assert float((served - res.tensor).abs().max()) <= 1e-5


def test_the_quick_preset_blends_and_anchors_as_shipped():
    # a fresh interpreter: the test session runs the quick preset without its blend and its
    # super-resolution anchor (conftest.py)
    code = ("from isnas_fast.search import preset; q, p = preset('quick'), preset('paper'); "
            "print(q.blend, p.blend, q.anchor, p.anchor)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["dip-skip", "none", "bicubic", "none"]


def test_the_partner_is_kept_to_small_denoises_without_an_ensemble():
    s = replace(preset("quick"), blend="dip-skip").validate()
    assert s.partner("denoise", (64, 96)) == "dip-skip"
    assert s.partner("denoise", (192, 192)) is None  # measured below the size rule only
    assert s.partner("inpaint", (64, 64)) is None and s.partner("sr", (64, 64)) is None
    assert replace(s, ensemble=2).partner("denoise", (64, 64)) is None
    assert replace(s, blend="none").partner("denoise", (64, 64)) is None
    with pytest.raises(InputError, match="blend must be one of"):
        replace(s, blend="bm3d").validate()


def test_a_tiled_restore_is_not_blended():
    g = torch.Generator().manual_seed(2)
    noisy = Denoise(25).corrupt(torch.rand(1, 1, 64, 96, generator=g), seed=0).y
    said = []
    res = restore(noisy, "denoise", sigma=25, blend="dip-skip", tile=64, log=said.append, **TINY)
    assert not isinstance(res.run.network, BlendedNetwork) and res.run.partner is None
    assert "blended" not in res.report()
    assert any("not blended with dip-skip" in m for m in said)
