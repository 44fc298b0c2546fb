"""The DIP loop (docs/design.md §6): determinism, EMA, no use of ground truth, ES-WMV detector."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from isnas_fast.device import seeded
from isnas_fast.dip import DIPSettings, EarlyStopping, fit_dip, make_input_code
from isnas_fast.dip.early_stopping import WindowVariance as _WindowVariance
from isnas_fast.errors import InputError
from isnas_fast.network import build_network
from isnas_fast.tasks import Denoise, Inpaint


def _net(seed=0, arch="64,0001010110110101110010111"):
    with seeded(seed):
        return build_network(arch, 3, 3, width=16)


def test_input_code_range_and_seed():
    z = make_input_code(3, (64, 96), seed=5)
    assert z.shape == (1, 3, 64, 96) and float(z.min()) >= 0 and float(z.max()) < 0.1
    assert torch.equal(z, make_input_code(3, (64, 96), seed=5))
    assert not torch.equal(z, make_input_code(3, (64, 96), seed=6))


def test_deterministic_given_seed_and_loss_decreases(small):
    obs = Denoise(25).corrupt(small, seed=1)
    a = fit_dip(_net(), obs, DIPSettings(30), seed=3, quiet=True)
    b = fit_dip(_net(), obs, DIPSettings(30), seed=3, quiet=True)
    assert torch.equal(a.output, b.output) and a.losses == b.losses
    assert a.iterations_run == 30 and len(a.losses) == 30
    assert np.mean(a.losses[-5:]) < np.mean(a.losses[:5])
    c = fit_dip(_net(), obs, DIPSettings(30), seed=4, quiet=True)
    assert not torch.equal(a.output, c.output)


def test_ground_truth_only_records_psnr(small):
    obs = Denoise(25).corrupt(small, seed=1)
    without = fit_dip(_net(), obs, DIPSettings(12), seed=0, quiet=True)
    with_gt = fit_dip(_net(), obs, DIPSettings(12), seed=0, ground_truth=small, quiet=True)
    assert torch.equal(without.output, with_gt.output)
    assert without.psnr_curve is None
    assert len(with_gt.psnr_curve) == 12 and all(np.isfinite(with_gt.psnr_curve))


def test_ema_is_exponential_average_of_raw_outputs(small):
    obs = Denoise(25).corrupt(small, seed=1)
    raws = []
    net = _net()
    orig_forward = net.forward

    def spy(z):
        out = orig_forward(z)
        if torch.is_grad_enabled():  # the training steps (the averaged network's copies call this too)
            raws.append(out.detach().clone())
        return out

    net.forward = spy  # type: ignore[method-assign]
    res = fit_dip(net, obs, DIPSettings(6, ema=0.9), seed=0, quiet=True)
    s = raws[0].double()
    for r in raws[1:]:
        s = 0.9 * s + 0.1 * r.double()
    assert torch.allclose(res.output_average.double(), s.clamp(0, 1), atol=1e-6)


def test_batchnorm_stays_in_training_mode(small):
    obs = Denoise(25).corrupt(small, seed=1)
    net = _net().eval()
    res = fit_dip(net, obs, DIPSettings(2), seed=0, quiet=True)
    assert all(m.training for m in res.network.modules())


def test_inpainting_loss_ignores_missing_pixels(small):
    obs = Inpaint(p=50).corrupt(small, seed=0)
    poisoned = obs.y.clone()
    poisoned[obs.mask.expand_as(poisoned) == 0] = 1.0  # junk where pixels are missing
    a = fit_dip(_net(), Inpaint(p=50).observe(poisoned, mask=obs.mask), DIPSettings(5), seed=0, quiet=True)
    b = fit_dip(_net(), obs, DIPSettings(5), seed=0, quiet=True)
    assert torch.equal(a.output, b.output)


def test_window_variance_matches_numpy():
    rng = np.random.default_rng(11)
    stream = rng.normal(size=(40, 2, 3, 4))
    wv = _WindowVariance(7)
    for i, x in enumerate(stream):
        v = wv.push(torch.from_numpy(x))
        if i < 6:
            assert v is None
        else:
            win = stream[i - 6 : i + 1]
            expect = np.mean((win - win.mean(axis=0)) ** 2)
            assert v == pytest.approx(expect, rel=1e-9)


def test_early_stopping_stops_after_patience(small):
    obs = Denoise(25).corrupt(small, seed=1)
    res = fit_dip(_net(), obs, DIPSettings(400), seed=0, quiet=True,
                  early_stopping=EarlyStopping(window=5, patience=3, method="wmv"))
    assert res.stopped_at is not None and res.early_stopped
    assert res.iterations_run == res.stopped_at + 3 < 400
    assert len(res.variance_curve) == res.iterations_run - 4
    assert res.stopped_at - 4 - 1 == int(np.argmin(res.variance_curve))


@pytest.mark.parametrize("bad", [dict(iterations=0), dict(iterations=5, lr=0), dict(iterations=5, ema=1.0)])
def test_bad_settings(bad):
    with pytest.raises(InputError):
        DIPSettings(**bad)


def test_a_run_logged_to_a_file_writes_progress_lines(small, capsys, monkeypatch):
    import isnas_fast.dip.progress as progress

    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.0)  # a line after every step
    obs = Denoise(25).corrupt(small, seed=1)
    fit_dip(_net(), obs, DIPSettings(3), seed=0, desc="final")  # pytest's stderr is not a terminal
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("final: step")]
    assert [l.split(",")[0] for l in lines] == ["final: step 1/3", "final: step 2/3", "final: step 3/3"]
    assert "elapsed, at most" in lines[0] and lines[-1].endswith("at most 0 s left at this pace")
    fit_dip(_net(), obs, DIPSettings(3), seed=0, desc="final", quiet=True)
    assert "final: step" not in capsys.readouterr().err


def test_progress_lines_keep_their_interval():
    import io

    from isnas_fast.dip.progress import LogLines

    out = io.StringIO()
    lines = LogLines(100, "final", enabled=True, stream=out, every=3600.0)
    for it in range(1, 101):
        lines.update(it)
    assert out.getvalue() == ""  # not an hour yet
    off = LogLines(100, "final", enabled=False, stream=out, every=0.0)
    off.update(1)
    assert out.getvalue() == ""
