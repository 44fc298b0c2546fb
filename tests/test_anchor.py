"""Super-resolution's anchor: two starts' mean shrunk toward bicubic by how much the starts agree."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from isnas_fast import restore
from isnas_fast.bundle import FORMAT_VERSION, load_run, save_run
from isnas_fast.dip.anchor import AnchoredNetwork, agreement_weight
from isnas_fast.dip.averaging import AveragedNetwork, network_output
from isnas_fast.errors import InputError
from isnas_fast.network import resolve_architecture
from isnas_fast.search import preset
from isnas_fast.search.candidates import restart_seed
from isnas_fast.tasks import SuperResolve, bicubic_upsample

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(iterations=24, candidates=2, cohort_iterations=10, quiet=True)


def _weight_f64(starts: list[np.ndarray], anchor: np.ndarray) -> float:
    """An independent float64 reading of the definition: mean pairwise inner product of the
    starts' differences from the anchor over the squared norm of their mean difference."""
    d = [s.astype(np.float64).ravel() - anchor.astype(np.float64).ravel() for s in starts]
    pairs = [float(d[i] @ d[j]) for i in range(len(d)) for j in range(i + 1, len(d))]
    mean = np.mean(d, axis=0)
    return float(np.clip(np.mean(pairs) / float(mean @ mean), 0.0, 1.0))


def test_agreement_weight_keeps_what_the_starts_share_and_drops_what_they_do_not():
    g = torch.Generator().manual_seed(0)
    anchor = torch.rand(1, 3, 32, 32, generator=g) * 0.5 + 0.25
    shared = 0.05 * torch.randn(1, 3, 32, 32, generator=g)
    own = [0.05 * torch.randn(1, 3, 32, 32, generator=g) for _ in range(3)]
    # identical starts: nothing to shrink
    assert agreement_weight([anchor + shared, anchor + shared], anchor) == pytest.approx(1.0)
    # unrelated patterns around the anchor: next to nothing is kept
    assert agreement_weight([anchor + own[0], anchor + own[1]], anchor) < 0.05
    # a shared difference of power S and unshared ones of power N each: about S / (S + N / 2)
    w = agreement_weight([anchor + shared + own[0], anchor + shared + own[1]], anchor)
    assert w == pytest.approx(2 / 3, abs=0.05)
    # against an independent float64 computation, K = 2 and 3
    for k in (2, 3):
        starts = [anchor + shared + o for o in own[:k]]
        want = _weight_f64([s.numpy() for s in starts], anchor.numpy())
        assert agreement_weight(starts, anchor) == pytest.approx(want, rel=1e-9, abs=1e-12)
    # starts that equal the anchor: 1 (no NaN)
    assert agreement_weight([anchor, anchor], anchor) == 1.0
    with pytest.raises(ValueError):
        agreement_weight([anchor], anchor)
    with pytest.raises(ValueError):
        agreement_weight([anchor, anchor[..., :16]], anchor)


def test_anchored_network_is_the_weighted_sum_of_network_and_anchor():
    g = torch.Generator().manual_seed(1)
    net = torch.nn.Conv2d(2, 3, 3, padding=1)
    z = torch.rand(1, 2, 16, 16, generator=g)
    anchor = torch.rand(1, 3, 16, 16, generator=g)
    m = AnchoredNetwork(net, anchor, 0.3)
    with torch.no_grad():
        want = 0.3 * net(z).double() + 0.7 * anchor.double()
        got = m(z)
    assert torch.isfinite(got).all()
    assert float((got.double() - want).abs().max()) <= 1e-6 * float(want.abs().max())
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="weight"):
            AnchoredNetwork(net, anchor, bad)
    with pytest.raises(ValueError, match="anchor"):
        AnchoredNetwork(net, anchor[0], 0.5)


@pytest.fixture(scope="module")
def anchored_restore():
    g = torch.Generator().manual_seed(7)
    clean = torch.rand(1, 3, 64, 64, generator=g)
    low = SuperResolve(4).corrupt(clean).y
    res = restore(low, "sr", factor=4, ground_truth=clean, anchor="bicubic", seed=2, **TINY)
    return low, clean, res


def test_restore_shrinks_two_starts_toward_bicubic(anchored_restore):
    low, clean, res = anchored_restore
    run = res.run
    assert isinstance(run.network, AnchoredNetwork) and isinstance(run.network.network, AveragedNetwork)
    rep = res.report()
    assert rep["anchored"]["anchor"] == "bicubic" and rep["anchored"]["starts"] == 2
    arch = resolve_architecture(res.genotype)
    assert [r["seed"] for r in rep["restarts"]] == [restart_seed(2, arch, r) for r in range(2)]
    # the first start is the run `--arch nasdip-sr` makes of this image and seed
    alone = restore(low, "sr", factor=4, arch="nasdip-sr", seed=2, iterations=24, quiet=True, ground_truth=clean)
    assert rep["restarts"][0]["psnr"] == pytest.approx(alone.psnr, abs=1e-3)
    # the anchor is bicubic upsampling of the input; the weight is the starts' agreement on it
    anchor = bicubic_upsample(low, 4)
    assert torch.equal(run.network.anchor, anchor)
    w = float(run.network.weight)
    assert 0.0 <= w <= 1.0 and w == pytest.approx(rep["anchored"]["weight"], abs=1e-6)
    mean = network_output(run.network.network, run.z)
    want = (w * mean.double() + (1 - w) * anchor.double()).clamp(0, 1).float()
    assert float((res.tensor - want).abs().max()) <= 1e-6
    assert rep["psnr"] == pytest.approx(float(SuperResolve.psnr(res.tensor, clean)[0]), abs=1e-3)


def test_bundle_serves_the_anchored_image_and_refuses_bad_anchors(anchored_restore, tmp_path, reseal_weights):
    _, _, res = anchored_restore
    d = save_run(res, tmp_path / "b")
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 5
    assert manifest["anchor"]["name"] == "bicubic"
    assert manifest["anchor"]["weight"] == pytest.approx(float(res.run.network.weight), abs=1e-6)
    assert "anchored" in manifest["reproduction"]["exported_output"]
    assert manifest["reproduction"]["max_abs_diff_final_vs_restored"] == 0.0
    loaded = load_run(d)
    assert isinstance(loaded.network, AnchoredNetwork) and torch.equal(loaded.output(), res.tensor)
    again = load_run(save_run(loaded, tmp_path / "again"))
    assert torch.equal(again.output(), res.tensor)

    bad = tmp_path / "bad"
    save_run(res, bad)
    state = torch.load(bad / "weights.pt", weights_only=True)
    reseal_weights(bad, {**state, "weight": torch.tensor(1.5)})
    with pytest.raises(InputError, match="anchor's weight must be in"):
        load_run(bad)
    reseal_weights(bad, {**state, "anchor": torch.full_like(state["anchor"], float("nan"))})
    with pytest.raises(InputError, match="anchor image must hold finite values"):
        load_run(bad)
    reseal_weights(bad, state)
    m = json.loads((bad / "manifest.json").read_text())
    for entry in ({"name": "lanczos"}, "bicubic", {"name": ["bicubic"]}):
        m["anchor"] = entry
        (bad / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(InputError, match="'anchor' must name one of bicubic"):
            load_run(bad)
    m["anchor"] = {"name": "bicubic"}
    m["task"] = {"name": "denoise", "params": {"sigma": 25.0}}
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="applies only to a super-resolution run"):
        load_run(bad)


def test_onnx_export_serves_the_anchored_image(anchored_restore, tmp_path):
    pytest.importorskip("onnx", reason="the ONNX exporter needs the onnx package (the export extra)")
    pytest.importorskip("onnxruntime", reason="serving the model needs ONNX Runtime (the export extra)")
    from isnas_fast.export import run_onnx, to_onnx
    _, _, res = anchored_restore
    image, _ = run_onnx(to_onnx(res, tmp_path / "m.onnx"), provider="cpu")
    served = torch.from_numpy(image)
    # float32 ONNX Runtime against float32 PyTorch: the same ops, another kernel order
    assert torch.isfinite(served).all()
    assert float((served - res.tensor).abs().max()) <= 1e-5


def test_the_anchor_applies_to_super_resolution_without_an_ensemble_only():
    s = replace(preset("quick"), anchor="bicubic").validate()
    assert s.anchor_for("sr") == "bicubic" and s.starts_for("sr") == 2
    assert s.anchor_for("denoise") is None and s.starts_for("denoise") == 1
    assert s.anchor_for("inpaint") is None
    assert replace(s, restarts=3).starts_for("sr") == 3
    assert replace(s, ensemble=2).anchor_for("sr") is None
    with pytest.raises(InputError, match="anchor must be one of"):
        replace(s, anchor="lanczos").validate()


def test_a_tiled_super_resolution_is_not_anchored():
    g = torch.Generator().manual_seed(3)
    low = SuperResolve(4).corrupt(torch.rand(1, 1, 64, 96, generator=g)).y
    said = []
    res = restore(low, "sr", factor=4, anchor="bicubic", tile=64, log=said.append, **TINY)
    assert not isinstance(res.run.network, AnchoredNetwork)
    assert "anchored" not in res.report()
    assert any("not shrunk toward bicubic" in m for m in said)
