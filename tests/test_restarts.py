"""Restarts: several random starts of one architecture, their images averaged and served as one network."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from isnas_fast import restore
from isnas_fast.bundle import load_run, save_run
from isnas_fast.device import seeded
from isnas_fast.dip import MAX_RESTARTS, DIPSettings, EarlyStopping, fit_dip, merge_restarts
from isnas_fast.dip.averaging import AveragedNetwork, network_output
from isnas_fast.dip.restarts import merge_networks
from isnas_fast.errors import InputError
from isnas_fast.network import build_network
from isnas_fast.search import preset, train_finals
from isnas_fast.search.candidates import genotype_seed, restart_seed
from isnas_fast.search.training import GroupMember, train_group
from isnas_fast.tasks import Denoise

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH = "64,0001010110110101110010111"


def _fit(seed: int, obs, iterations: int = 16):
    with seeded(seed):
        net = build_network(ARCH, 3, 3, 16, task="denoise")
    return fit_dip(net, obs, DIPSettings(iterations), seed=seed, quiet=True,
                   early_stopping=EarlyStopping(window=6, patience=100))


@pytest.fixture(scope="module")
def two_runs():
    g = torch.Generator().manual_seed(11)
    obs = Denoise(25).corrupt(torch.rand(1, 3, 64, 64, generator=g), seed=0)
    return obs, [_fit(3, obs), _fit(4, obs)]


def test_merged_network_computes_the_mean_of_the_runs_images(two_runs):
    _, runs = two_runs
    assert all(isinstance(r.network, AveragedNetwork) for r in runs)
    assert not torch.equal(runs[0].z, runs[1].z)
    merged = merge_networks([r.network for r in runs], [r.z for r in runs])
    assert len(merged.members) == sum(len(r.network.members) for r in runs)
    assert float(merged.coefficients.sum()) == pytest.approx(1.0, abs=1e-6)
    fast = network_output(merged, runs[0].z)
    singles = [network_output(r.network, r.z) for r in runs]
    mean32 = (singles[0] + singles[1]) / 2
    assert torch.isfinite(fast).all()
    # float32 against float32: the same sum in another order
    assert float((fast - mean32).abs().max()) <= 1e-5 * float(mean32.abs().max())
    # against an independent float64 computation of every member on its own input
    ref = torch.zeros_like(fast, dtype=torch.float64)
    for r in runs:
        for j, net in enumerate(r.network.members):
            # each member's float32 output, weighted and summed in float64
            x = network_output(net, r.z + r.network.offsets[j:j + 1])
            ref += x.double() * float(r.network.coefficients[j]) / 2
    assert float((fast.double() - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


def test_merge_restarts_returns_the_merged_image_and_lists_each_run(two_runs):
    obs, runs = two_runs
    merged = merge_restarts(runs, [3, 4], psnr=lambda out: float(Denoise.psnr(out, obs.y)[0]))
    assert torch.equal(merged.output, network_output(merged.network, merged.z).clamp(0, 1))
    assert torch.equal(merged.z, runs[0].z) and merged.seconds == pytest.approx(runs[0].seconds + runs[1].seconds)
    assert [r["seed"] for r in merged.restarts] == [3, 4]
    assert [r["iterations_run"] for r in merged.restarts] == [r.iterations_run for r in runs]
    assert merged.averaged_over.startswith("the mean of 2 restarts")
    assert merge_restarts(runs[:1], [3]) is runs[0]  # one start: the run itself
    with pytest.raises(ValueError):
        merge_restarts(runs, [3])


def test_restart_seeds_start_with_the_one_start_seed():
    seeds = [restart_seed(5, ARCH, r) for r in range(MAX_RESTARTS)]
    assert seeds[0] == genotype_seed(5, ARCH) and len(set(seeds)) == MAX_RESTARTS


def test_train_finals_with_restarts_merges_the_single_starts(small):
    obs = Denoise(25).corrupt(small, seed=0)
    settings = replace(preset("quick", final_iterations=12), early_stopping=None, clip_readout=False)
    (one,) = train_finals([ARCH], obs, settings, seed=1, quiet=True)
    (three,) = train_finals([ARCH], obs, replace(settings, restarts=3), seed=1, quiet=True, ground_truth=small)
    assert [r["seed"] for r in three.dip.restarts] == [restart_seed(1, ARCH, r) for r in range(3)]
    # start 0 is the one-start run; the others are the same runs trained from their own seeds
    opts = settings.final_run("denoise")
    others = [train_group([GroupMember(ARCH, restart_seed(1, ARCH, r), 3, 16)], obs, opts,
                          device=torch.device("cpu"), quiet=True)[0].result for r in (1, 2)]
    parts = [network_output(one.network, one.z)] + [network_output(o.network, o.z) for o in others]
    want = (sum(parts) / 3).clamp(0, 1)
    assert float((three.dip.output - want).abs().max()) <= 1e-5
    assert three.dip.restarts[0]["psnr"] == pytest.approx(float(Denoise.psnr(one.dip.output, small)[0]), abs=1e-4)
    assert three.dip.psnr_at_stop == pytest.approx(float(Denoise.psnr(three.dip.output, small)[0]), abs=1e-6)


def test_restore_with_restarts_reports_them_and_its_bundle_serves_the_mean(small, tmp_path):
    noisy = Denoise(25).corrupt(small, seed=0).y
    res = restore(noisy, "denoise", sigma=25, arch="nasdip-denoise", iterations=20, restarts=2, quiet=True,
                  ground_truth=small)
    rep = res.report()
    assert len(rep["restarts"]) == 2 and rep["served"]["is_the_returned_image"]
    assert "2 restarts" in rep["served"]["averaged_over"]
    path = save_run(res, tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["members"] == len(res.run.network.members)
    assert manifest["reproduction"]["max_abs_diff_final_vs_restored"] <= 1e-6
    served = load_run(path).output()
    assert float((served.clamp(0, 1) - res.tensor.cpu()).abs().max()) <= 1e-5
    pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")
    import onnxruntime as ort

    from isnas_fast.export.onnx_export import to_onnx

    sess = ort.InferenceSession(str(to_onnx(res.run, tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    (image,) = sess.run(None, {})
    # ONNX Runtime's float32 convolutions against PyTorch's: a few float32 roundings per member
    assert float((torch.from_numpy(image).clamp(0, 1) - res.tensor.cpu()).abs().max()) <= 1e-4


def test_restarts_out_of_range_and_where_they_do_not_apply(sample):
    for bad in (0, MAX_RESTARTS + 1, True, 1.5):
        with pytest.raises(InputError, match="restarts"):
            preset("quick", restarts=bad)
    noisy = Denoise(25).corrupt(sample, seed=0).y
    with pytest.raises(InputError, match="restarts 1"):
        restore(noisy, "denoise", sigma=25, arch="nasdip-denoise", iterations=4, restarts=2, tile=64, quiet=True)


def test_cli_rejects_too_many_restarts_in_one_line(tmp_path, small):
    from isnas_fast.io import save_image

    save_image(small, tmp_path / "in.png")
    proc = subprocess.run([sys.executable, "-m", "isnas_fast", "restore", str(tmp_path / "in.png"), "--task",
                           "denoise", "--sigma", "25", "--restarts", str(MAX_RESTARTS + 1), "-o",
                           str(tmp_path / "out.png")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "restarts" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.png").exists()


def test_a_study_refuses_restarts_and_a_suite_job_with_restarts_goes_alone(tmp_path, small):
    from isnas_fast.study import run_study
    from isnas_fast.suite.jobs import Job
    from isnas_fast.suite.methods import JobInput, batchable

    noisy = Denoise(25).corrupt(small, seed=0).y
    with pytest.raises(InputError, match="restarts"):
        run_study(noisy, "denoise", sigma=25, ground_truth=small, out=tmp_path / "s", restarts=2)
    for restarts, alone in ((1, False), (2, True)):
        inp = JobInput(job=Job(image="a", method="nasdip", seed=0), task="denoise", task_params={"sigma": 25.0},
                       preset="quick", options={"restarts": restarts}, observed=noisy, mask=None, clean=small)
        assert batchable(inp) is not alone


def test_suite_with_restarts_tables_the_gain_over_the_first_start(tmp_path, small):
    from isnas_fast.io import save_image
    from isnas_fast.suite import LocalExecutor, run_suite

    (tmp_path / "images").mkdir()
    save_image(small, tmp_path / "images" / "a.png")
    res = run_suite(tmp_path / "images", "denoise", out=tmp_path / "suite", methods="nasdip", seeds=2,
                    executor=LocalExecutor(threads=1), plot=False, quiet=True, width=16, iterations=6,
                    restarts=2)
    rows = res.rows
    assert len(rows) == 2 and all(len(r["restarts"]) == 2 for r in rows)
    gains = [r["psnr"] - r["restarts"][0]["psnr"] for r in rows]
    text = (tmp_path / "suite" / "summary.md").read_text()
    assert "2 random starts per full-size run" in text and "against the first start alone" in text
    table = (tmp_path / "suite" / "restarts.csv").read_text().splitlines()
    head, values = table[0].split(","), table[1].split(",")
    got = dict(zip(head, values))
    assert got["method"] == "nasdip" and int(got["n"]) == 2 and int(got["starts"]) == 2
    assert float(got["gain_mean"]) == pytest.approx(sum(gains) / 2, abs=1e-6)  # the CSV rounds to 8 places
