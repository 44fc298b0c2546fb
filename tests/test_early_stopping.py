"""Early-stopping detectors (isnas_fast.dip.early_stopping) on constructed signals, and watching probes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from isnas_fast.device import seeded
from isnas_fast.dip import DIPSettings, EarlyStopping, fit_dip
from isnas_fast.dip.early_stopping import EMVDetector, ShiftDetector, WMVDetector, make_detector
from isnas_fast.errors import InputError
from isnas_fast.network import build_network
from isnas_fast.tasks import Denoise, Inpaint


def _stream(values, shape=(1, 1, 4, 4)):
    """Outputs whose window variance follows the spread of ``values`` (alternating +-v)."""
    return [torch.full(shape, 0.5 + (v if i % 2 else -v)) for i, v in enumerate(values)]


def _run(detector, outs):
    for it, o in enumerate(outs, 1):
        if detector.update(it, o, o, 0.0):
            return it
    return None


def test_wmv_patience_and_rise():
    # variance falls to a valley at step ~20, rises, then falls far lower (a net fitting the noise)
    spread = [0.2] * 10 + [0.05] * 12 + [0.1] * 20 + [0.01] * 30
    outs = _stream(spread)
    patient = WMVDetector(EarlyStopping(window=4, patience=1000))
    assert _run(patient, outs) is None and patient.best_iteration > 42  # never fires: the late valley wins
    rising = WMVDetector(EarlyStopping(window=4, patience=1000, rise=0.5))
    fired = _run(rising, outs)
    assert fired is not None and 22 < fired <= 26 and rising.best_iteration <= 22  # the first valley
    short = WMVDetector(EarlyStopping(window=4, patience=5))
    assert _run(short, outs) == short.best_iteration + 5


def test_wmv_returns_the_window_mean():
    outs = [torch.full((1, 1, 2, 2), v) for v in (0.1, 0.3, 0.2, 0.4, 0.4, 0.4)]
    d = WMVDetector(EarlyStopping(window=3, patience=100))
    _run(d, outs)
    assert d.best_iteration == 6 and torch.allclose(d.best_output, torch.full((1, 1, 2, 2), 0.4))
    assert len(d.trace) == 4 and np.argmin(d.trace) == 3


def test_emv_is_an_exponential_variance():
    rng = np.random.default_rng(0)
    xs = rng.random((30, 1, 1, 2, 2))
    d = EMVDetector(EarlyStopping(window=2, patience=100, method="emv", alpha=0.2))
    m, v = xs[0].copy(), np.zeros_like(xs[0])
    for it, x in enumerate(xs, 1):
        d.update(it, torch.from_numpy(x), torch.from_numpy(x), 0.0)
        if it > 1:
            diff = x - m
            m = m + 0.2 * diff
            v = (1 - 0.2) * (v + 0.2 * diff * diff)
    assert d.trace[-1] == pytest.approx(float(v.mean()), rel=1e-12)
    assert torch.allclose(d.mean, torch.from_numpy(m))


def test_shift_validation_compares_neighbours_over_known_pixels():
    y = torch.rand(1, 3, 8, 8)
    mask = (torch.rand(1, 1, 8, 8) > 0.3).float()
    obs = Inpaint(mask=mask).observe(y)
    d = ShiftDetector(EarlyStopping(window=2, patience=10, method="shift"), obs)
    out = torch.rand(1, 3, 8, 8)
    d.update(1, out, out, 0.0)  # before the window: no signal yet
    assert d.trace == []
    d.update(2, out, out, 0.0)
    a, yy, m = (out * mask).numpy(), (y * mask).numpy(), mask.numpy()
    wh, wv = m[..., :, 1:] * m[..., :, :-1], m[..., 1:, :] * m[..., :-1, :]
    want = (((a[..., :, :-1] - yy[..., :, 1:]) ** 2 * wh).sum() + ((a[..., :-1, :] - yy[..., 1:, :]) ** 2 * wv).sum()) \
        / ((wh.sum() + wv.sum()) * 3)
    assert d.trace[0] == pytest.approx(float(want), rel=1e-6)
    assert isinstance(make_detector(EarlyStopping(method="shift"), obs), ShiftDetector)


def test_probes_record_what_they_would_return_without_stopping(small):
    obs = Denoise(25).corrupt(small, seed=3)
    with seeded(0):
        net = build_network("64,0001010110110101110010111", 3, 3, width=16)
    probes = [EarlyStopping(window=5, patience=3, method="wmv"),
              EarlyStopping(window=5, patience=3, method="emv", alpha=0.3)]
    r = fit_dip(net, obs, DIPSettings(40), seed=0, ground_truth=small, quiet=True, probes=probes)
    assert r.iterations_run == 40 and not r.early_stopped
    assert set(r.probes) == {"wmv/w5/p3", "emv/w5/p3/a0.3"}
    for p in r.probes.values():
        assert (p["fired_at"] is None or p["fired_at"] - p["iteration"] >= 3) and p["psnr"] > 0


@pytest.mark.parametrize("bad", [dict(method="median"), dict(alpha=1.5), dict(rise=-0.1), dict(window=1)])
def test_bad_settings(bad):
    with pytest.raises(InputError):
        EarlyStopping(**bad)


def test_clipped_observation_moments_match_monte_carlo():
    from isnas_fast.dip.early_stopping import clipped_observation_moments

    g = torch.Generator().manual_seed(0)
    x = torch.tensor([0.0, 0.01, 0.07, 0.3, 0.5, 0.93, 1.0], dtype=torch.float64)
    for sigma in (5 / 255, 25 / 255, 50 / 255):
        y = (x + torch.randn(400_000, x.numel(), generator=g, dtype=torch.float64) * sigma).clamp(0, 1)
        mean, var = clipped_observation_moments(x, sigma)
        assert torch.allclose(mean, y.mean(0), rtol=0, atol=4 * sigma / 400_000 ** 0.5)
        assert torch.allclose(var, y.var(0), rtol=0.02, atol=1e-7)
    # at x = 0 the closed forms of a half-normal
    s = 25 / 255
    m0, v0 = clipped_observation_moments(torch.zeros(1, dtype=torch.float64), s)
    assert m0.item() == pytest.approx(s / math.sqrt(2 * math.pi), rel=1e-9)
    assert v0.item() == pytest.approx(s * s * (0.5 - 1 / (2 * math.pi)), rel=1e-9)


def test_clipped_noise_variance_is_the_variance_at_the_pixel_whose_clipped_mean_is_the_estimate():
    from isnas_fast.dip.early_stopping import clipped_noise_variance, clipped_observation_moments

    s = 25 / 255
    x = torch.linspace(0, 1, 41, dtype=torch.float64)
    mean, var = clipped_observation_moments(x, s)
    assert torch.allclose(clipped_noise_variance(mean, s), var, rtol=1e-6, atol=1e-12)
    # far from 0 and 1 the clip does not bite: the plain variance
    assert clipped_noise_variance(torch.tensor([0.5]), s).item() == pytest.approx(s * s, rel=1e-6)
    # an estimate beyond the clipped means of x = 0 and x = 1 is taken at those ends
    assert clipped_noise_variance(torch.tensor([0.0, 1.0]), s).tolist() == pytest.approx([v0 := var[0].item(), v0])


def test_discrepancy_stops_when_the_window_residual_reaches_the_noise_level():
    from isnas_fast.dip.early_stopping import DiscrepancyDetector

    g = torch.Generator().manual_seed(1)
    clean = 0.3 + 0.4 * torch.rand(1, 3, 16, 16, generator=g)  # away from 0 and 1: no clipping
    obs = Denoise(25).corrupt(clean, seed=2)
    sigma2 = (25 / 255) ** 2
    noise = obs.y - clean
    # outputs that move from a flat image to the clean one (steps 1-60), then into the noise (61-120)
    flat = torch.full_like(clean, 0.5)
    outs = [flat + (clean - flat) * min(1.0, t / 60) + noise * max(0.0, (t - 60) / 60) for t in range(1, 121)]
    d = DiscrepancyDetector(EarlyStopping(window=5, method="discrepancy"), obs)
    fired = _run(d, outs)
    assert fired is not None and d.best_iteration == fired
    # after t steps the window is the last min(5, t // 2) outputs, checked from step 5 // 2 = 2 on
    def window_mean(t):
        return torch.stack(outs[t - min(5, t // 2):t]).mean(0)

    resid = [float((window_mean(t) - obs.y).square().mean()) for t in range(2, 121)]
    first = next(t for t, r in zip(range(2, 121), resid) if r <= sigma2)
    assert fired == first < 120
    assert torch.allclose(d.best_output, window_mean(fired).clamp(0, 1), atol=1e-6)
    # no noise level (inpainting): it never fires, and keeps the window of smallest residual
    inp = Inpaint(mask=torch.ones(16, 16)).observe(obs.y)
    quiet = DiscrepancyDetector(EarlyStopping(window=5, method="discrepancy"), inp)
    assert _run(quiet, outs) is None and quiet.best_iteration == 120


def test_local_mean_noise_variance_reads_clipped_and_unclipped_flat_images():
    from isnas_fast.dip.early_stopping import ClippedNoiseTable, clipped_observation_moments, local_mean_noise_variance

    from isnas_fast.dip.early_stopping import _local_level_variance

    s = 25 / 255
    table = ClippedNoiseTable(s)
    for level, rel in ((0.0, 0.08), (0.03, 0.03), (0.5, 0.001), (1.0, 0.08)):
        clean = torch.full((1, 3, 64, 64), level)
        y = Denoise(25).corrupt(clean, seed=7).y
        want = float(clipped_observation_moments(torch.tensor([level], dtype=torch.float64), s)[1])
        got = local_mean_noise_variance(y, table)
        assert got == pytest.approx(want, rel=rel), level
        if level in (0.0, 1.0):  # the box mean's noise alone reads a clipped level high; the bootstrap takes half or more of it off
            plain = _local_level_variance(y.double(), table, 5)[0]
            assert plain - want > 1.5 * (got - want) > 0
    # two levels side by side: the box mixes them only along the edge, one column in 32
    clean = torch.zeros(1, 1, 64, 64)
    clean[..., 32:] = 0.5
    y = Denoise(25).corrupt(clean, seed=8).y
    at = clipped_observation_moments(torch.tensor([0.0, 0.5], dtype=torch.float64), s)[1]
    got = local_mean_noise_variance(y, table)
    assert float(at.mean()) * 0.98 < got < float(at.mean()) * 1.06


def test_discrepancy_on_a_saturated_image_waits_until_the_window_mean_reaches_the_clipped_level():
    """A black image: the clipped observation has mean ``sigma / sqrt(2 pi)`` and a third of
    the noise's variance.  Outputs that come down to that mean from above (no noise fitted):
    the variance around a window mean still above it is larger, and alone it lets the
    residual (variance plus the mean's error squared) reach it while the error is large; the
    noisy image's own local level holds the stop until the error is small."""
    from isnas_fast.dip.early_stopping import ClippedNoiseTable, DiscrepancyDetector, clipped_observation_moments

    s = 25 / 255
    clean = torch.zeros(1, 3, 32, 32)
    obs = Denoise(25).corrupt(clean, seed=9)
    m0, v0 = (float(v) for v in clipped_observation_moments(torch.zeros(1, dtype=torch.float64), s))
    outs = [torch.full_like(clean, m0 + 0.6 * s * max(0.0, 1 - t / 150)) for t in range(1, 201)]
    d = DiscrepancyDetector(EarlyStopping(window=5, method="discrepancy"), obs)
    fired = _run(d, outs)
    assert fired is not None
    error = float(d.best_output.mean()) - m0
    assert 0 <= error < 0.2 * s and fired > 100
    # the variance around the window mean alone: fired with three times the error or more
    table, y = ClippedNoiseTable(s), obs.y.double()
    alone = next(t for t in range(2, 201)
                 if float((outs[t - 1].double() - y).square().mean()) <= float(table.variance_at_mean(outs[t - 1]).mean()))
    assert alone < fired and float(outs[alone - 1].mean()) - m0 > 2 * error
    assert v0 < s * s / 2


def test_discrepancy_start_holds_only_when_the_noise_level_is_reached_by_start_met_by():
    """Outputs reach the noise level at step ``first`` (the previous test's stream): a
    start holds the stop back to it; with ``start_met_by`` only when ``first`` is at most
    that step, and otherwise the run stops at ``first`` as with no start."""
    from isnas_fast.dip.early_stopping import DiscrepancyDetector

    g = torch.Generator().manual_seed(1)
    clean = 0.3 + 0.4 * torch.rand(1, 3, 16, 16, generator=g)
    obs = Denoise(25).corrupt(clean, seed=2)
    noise = obs.y - clean
    flat = torch.full_like(clean, 0.5)
    outs = [flat + (clean - flat) * min(1.0, t / 60) + noise * max(0.0, (t - 60) / 60) for t in range(1, 121)]

    def fired(**kw):
        d = DiscrepancyDetector(EarlyStopping(window=5, method="discrepancy", **kw), obs)
        return _run(d, outs), d

    first, _ = fired()
    assert first is not None and 10 < first < 100
    late = first + 15
    assert fired(start=late)[0] == late
    assert fired(start=late, start_met_by=first)[0] == late  # met by then: the start holds
    assert fired(start=late, start_met_by=first - 1)[0] == first  # met later: no start
    held, d = fired(start=late, start_met_by=first + 50)
    assert held == late and d.first_met == first
    assert EarlyStopping(start=late, start_met_by=first).parameters() == {
        "window": 100, "kappa": 1.0, "start": late, "start_met_by": first}
    with pytest.raises(InputError):
        EarlyStopping(start_met_by=-1)


def test_discrepancy_window_leaves_out_the_first_half_of_the_run():
    """A fast network: start-up outputs (black), from step 10 on the clean image with a
    quarter of the noise, from step 90 on the noisy image.  A fixed 100-output window would
    first be checked at step 100 and average in the start-up outputs and the noise; the
    window of the run's second half holds only the middle outputs when it fires."""
    from isnas_fast.dip.early_stopping import DiscrepancyDetector
    from isnas_fast.quality import psnr

    g = torch.Generator().manual_seed(3)
    clean = 0.3 + 0.4 * torch.rand(1, 3, 16, 16, generator=g)
    obs = Denoise(25).corrupt(clean, seed=4)
    black = torch.zeros_like(clean)
    middle = clean + 0.25 * (obs.y - clean)
    outs = [black if t < 10 else middle if t < 90 else obs.y for t in range(1, 201)]
    d = DiscrepancyDetector(EarlyStopping(window=100, method="discrepancy"), obs)
    fired = _run(d, outs)
    assert fired is not None and fired < 90
    assert fired >= 50  # checked from step window // 2
    # the window holds outputs fired // 2 + 1 .. fired: all middle ones
    assert torch.allclose(d.best_output, middle.clamp(0, 1), atol=1e-6)
    with_start_up = torch.stack(outs[:100]).mean(0)  # what a fixed 100-output window returns at step 100
    assert float(psnr(d.best_output, clean)[0]) > float(psnr(with_start_up.clamp(0, 1), clean)[0]) + 3


def _held_problem(seed: int = 5, size: int = 16):
    """A noisy image, a fifth of its pixels held out, as the held-out stop's twin run sees it."""
    from isnas_fast.search.validation import holdout_mask, validation_problem

    g = torch.Generator().manual_seed(seed)
    clean = 0.3 + 0.4 * torch.rand(1, 3, size, size, generator=g)
    obs = Denoise(25).corrupt(clean, seed=seed + 1)
    held = holdout_mask(obs, seed)
    return clean, obs, held, validation_problem(obs, held)


def test_heldout_error_is_the_window_means_error_on_the_held_pixels_in_float64():
    from isnas_fast.dip.early_stopping import HeldOutDetector

    clean, obs, held, problem = _held_problem()
    assert torch.equal(problem.held, held) and torch.equal(problem.held_y, obs.y * held)
    assert torch.equal(problem.mask, 1 - held)
    # outputs from flat to clean (steps 1-40), then into the noise (41-80): the noise of the
    # fitted pixels, and on the held-out ones noise of their own (what a network fitting its
    # neighbours' noise predicts there)
    flat = torch.full_like(clean, 0.5)
    other = 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(9))
    noise = (obs.y - clean) * (1 - held) + other * held
    outs = [flat + (clean - flat) * min(1.0, t / 40) + noise * max(0.0, (t - 40) / 40) for t in range(1, 81)]
    d = HeldOutDetector(EarlyStopping(window=6, patience=15, method="heldout"), problem)
    fired = _run(d, outs)
    # independent float64 reference: the mean of the last min(6, t // 2) outputs, its MSE on the held pixels
    o64, y64, h64 = [o.double().numpy() for o in outs], obs.y.double().numpy(), held.double().numpy()

    def ref(t):
        m = np.mean(o64[t - min(6, t // 2):t], axis=0)
        return float((((m - y64) * h64) ** 2).sum() / (h64.sum() * 3))

    want = [ref(t) for t in range(3, 81)]  # checked from step window // 2 = 3
    got = d.trace
    assert len(got) == len(want[:len(got)]) and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want[:len(got)], rtol=1e-10)
    best = 3 + int(np.argmin(want))
    assert 35 <= best <= 50 and d.best_iteration == best and fired == best + 15
    m = torch.stack(outs[best - 6:best]).mean(0).clamp(0, 1)
    assert torch.allclose(d.best_output, m, atol=1e-6)
    assert d.averages == "window" and d.averaging() == 6


def test_at_stop_returns_the_window_mean_at_its_step():
    from isnas_fast.dip.early_stopping import AtDetector

    outs = [torch.full((1, 1, 2, 2), float(v)) for v in range(1, 31)]
    d = make_detector(EarlyStopping(window=8, method="at", start=12), Denoise(25).observe(outs[0]))
    assert isinstance(d, AtDetector)
    assert _run(d, outs) == 12 and d.best_iteration == 12
    assert torch.allclose(d.best_output, torch.full((1, 1, 2, 2), 9.5).clamp(0, 1))  # mean of steps 7-12, clamped
    outs = [torch.full((1, 1, 2, 2), v / 100) for v in range(1, 31)]
    d = AtDetector(EarlyStopping(window=4, method="at", start=20))
    assert _run(d, outs) == 20
    assert torch.allclose(d.best_output, torch.full((1, 1, 2, 2), 0.185))  # steps 17-20
    with pytest.raises(InputError, match="start"):
        EarlyStopping(method="at")


def test_heldout_stop_needs_held_pixels_of_the_image_shape():
    from isnas_fast.tasks import Observation

    clean, obs, held, problem = _held_problem()
    with pytest.raises(InputError, match="held-out pixels"):
        make_detector(EarlyStopping(method="heldout"), obs)
    with pytest.raises(InputError, match="both"):
        Observation(problem.task, problem.y, problem.mask, held=held)
    with pytest.raises(InputError, match="shapes"):
        Observation(problem.task, problem.y, problem.mask, held=held[..., :8], held_y=problem.held_y)
    with pytest.raises(InputError, match="no held-out"):
        make_detector(EarlyStopping(method="heldout"),
                      Observation(problem.task, problem.y, problem.mask, held=held * 0, held_y=problem.held_y))


def test_heldout_stop_trains_the_twin_then_every_pixel_to_its_step(small, one_torch_thread):
    """The group's result is the run on every pixel stopped by ``at`` at the step the
    twin (a fifth of the pixels held out, the held-out stop) returned."""
    from dataclasses import replace

    from isnas_fast.dip import RunOptions
    from isnas_fast.search.candidates import genotype_seed
    from isnas_fast.search.training import GroupMember, train_group
    from isnas_fast.search.validation import holdout_mask, validation_problem

    clean = small
    obs = Denoise(25).corrupt(clean, seed=2)
    arch = "nasdip-denoise"
    members = [GroupMember(arch, genotype_seed(s, arch), 3, 16) for s in (0, 1)]
    es = EarlyStopping(window=10, patience=8, method="heldout")
    options = RunOptions(DIPSettings(40), early_stopping=es, member_threads=1)
    cpu = torch.device("cpu")
    got = train_group(members, obs, options, device=cpu, quiet=True, ground_truth=clean)
    for m, g in zip(members, got):
        twin = train_group([m], validation_problem(obs, holdout_mask(obs, m.seed)), replace(options, served=False),
                           device=cpu, quiet=True)[0].result
        step = twin.stopped_at
        assert step is not None and 5 <= step <= 40
        at = train_group([m], obs, replace(options, early_stopping=EarlyStopping(window=10, method="at", start=step)),
                         device=cpu, quiet=True)[0].result
        assert g.result.stopped_at == step == at.iterations_run
        assert torch.isfinite(g.result.output).all()
        assert float((g.result.output - at.output).abs().max()) <= 1e-5
        assert g.result.seconds >= at.seconds * 0.5 and g.result.psnr_at_stop is not None


def test_heldout_twin_trains_the_members_own_task_network(small, one_torch_thread, monkeypatch):
    """A denoise's held-out twin fits an inpainting problem, yet builds the denoising
    variant of a named network (DIP-skip's differs for inpainting), as the run on every
    pixel does: otherwise the twin's stop step would come from another network."""
    import isnas_fast.search.training as training
    from isnas_fast.dip import RunOptions
    from isnas_fast.network import count_parameters
    from isnas_fast.search.validation import holdout_mask, validation_problem

    built = []
    real = training.build_network

    def spy(arch, *args, task=None, **kw):
        built.append(task)
        return real(arch, *args, task=task, **kw)

    monkeypatch.setattr(training, "build_network", spy)
    obs = Denoise(25).corrupt(small, seed=2)
    es = EarlyStopping(window=2, patience=2, method="heldout")
    member = training.GroupMember("dip-skip", 5, 32, 128)
    got = training.train_group([member], obs, RunOptions(DIPSettings(4), early_stopping=es, member_threads=1),
                               device=torch.device("cpu"), quiet=True)
    assert built == ["denoise", "denoise"]
    assert torch.isfinite(got[0].result.output).all()
    # the task a member names overrides the observation's: the denoising DIP-skip on a held-out problem
    held = validation_problem(obs, holdout_mask(obs, 5))
    plain = training.train_group([training.GroupMember("dip-skip", 5, 32, 128, task="denoise")], held,
                                 RunOptions(DIPSettings(1), member_threads=1), device=torch.device("cpu"),
                                 quiet=True)[0].network
    inpainting = real("dip-skip", 32, 3, task="inpaint")
    assert built[-1] == "denoise"
    assert count_parameters(plain) == count_parameters(real("dip-skip", 32, 3, task="denoise"))
    assert count_parameters(plain) < count_parameters(inpainting)


def test_every_stop_is_named_in_the_suite_summary():
    from isnas_fast.dip import ES_METHODS
    from isnas_fast.search import preset
    from isnas_fast.suite.summary import early_stopping_note

    for method in ES_METHODS:
        es = EarlyStopping(method=method, start=10 if method == "at" else 0)
        note = early_stopping_note(preset("quick", early_stopping=es), Denoise(25))
        assert "stops where its detector fires" in note and "window" in note, method
