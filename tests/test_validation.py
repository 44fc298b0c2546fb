"""The validated selection: held-out pixels, their error, the pick and the final run's stop start."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from isnas_fast.dip import DIPResult, EarlyStopping
from isnas_fast.dip.early_stopping import make_detector
from isnas_fast.errors import InputError
from isnas_fast.network import BASELINES
from isnas_fast.search import FAST_FIT_STEPS, preset, search_picks
from isnas_fast.search.cohort import CohortMember
from isnas_fast.search.validation import (HOLDOUT_FRACTION, MARGIN_SE, heldout_error, heldout_scores, holdout_mask,
                                          paired_standard_error, select_validated, snapshot_steps, validates,
                                          validation_problem)
from isnas_fast.tasks import Denoise, Inpaint, SuperResolve

TINY = dict(num_candidates=3, cohort_size=2, cohort_iterations=20, final_iterations=5)


def _result(output: torch.Tensor, snapshots: dict, raw: dict, iterations: int = 30) -> DIPResult:
    return DIPResult(output=output, last_output=output, network=torch.nn.Identity(), z=output, losses=[],
                     iterations_run=iterations, seconds=0.0, snapshots=snapshots, raw_snapshots=raw)


def test_holdout_mask_is_seeded_and_only_on_known_pixels():
    g = torch.Generator().manual_seed(1)
    obs = Denoise(25).corrupt(torch.rand((1, 3, 128, 96), generator=g), seed=0)
    a, b, c = holdout_mask(obs, 0), holdout_mask(obs, 0), holdout_mask(obs, 1)
    assert a.shape == (1, 1, 128, 96) and torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.mean()) - HOLDOUT_FRACTION) < 0.03
    inp = Inpaint(50).corrupt(torch.rand((1, 3, 128, 96), generator=g), seed=3)
    held = holdout_mask(inp, 0)
    assert float((held * (1 - inp.mask)).sum()) == 0  # only known pixels are held out
    prob = validation_problem(inp, held)
    assert torch.equal(prob.mask, inp.mask * (1 - held)) and float((prob.y * (1 - prob.mask)).abs().sum()) == 0
    with pytest.raises(InputError, match="fraction"):
        holdout_mask(obs, 0, fraction=1.0)


def test_validation_problem_hides_the_held_pixels_from_the_loss():
    g = torch.Generator().manual_seed(2)
    obs = Denoise(25).corrupt(torch.rand((1, 3, 64, 64), generator=g), seed=0)
    held = holdout_mask(obs, 0)
    prob = validation_problem(obs, held)
    out = torch.rand((1, 3, 64, 64), generator=g)
    changed = out + held * 0.5  # differs from ``out`` on held-out pixels only
    assert float(prob.loss(out)) == float(prob.loss(changed))
    assert validates(obs) and not validates(SuperResolve(4).corrupt(torch.rand((1, 3, 64, 64)), seed=0))
    with pytest.raises(InputError, match="no pixels to hold out"):
        validation_problem(SuperResolve(4).corrupt(torch.rand((1, 3, 64, 64)), seed=0), held[..., :16, :16])


def test_heldout_error_matches_float64_and_takes_the_best_kept_output():
    g = torch.Generator().manual_seed(3)
    obs = Denoise(25).corrupt(torch.rand((1, 3, 64, 64), generator=g), seed=0)
    held = holdout_mask(obs, 5)
    outs = [torch.rand((1, 3, 64, 64), generator=g) for _ in range(3)]
    res = _result(outs[0], {10: outs[1]}, {20: outs[2]})
    y, m = obs.y.double(), held.double()

    def ref(o):
        return float((((o.double() - y) * m) ** 2).sum() / (m.sum() * 3))

    want = min((ref(outs[0]), 30), (ref(outs[1]), 10), (ref(outs[2]), 20))
    err, at = heldout_error(res, obs, held)
    assert err == pytest.approx(want[0], rel=1e-6) and at == want[1]
    # the output itself is the best: its error, at the last iteration
    res = _result(obs.y.clone(), {10: outs[1]}, {20: outs[2]})
    assert heldout_error(res, obs, held) == (0.0, 30)


def test_heldout_error_estimates_the_true_error_plus_the_noise_variance():
    # No clipping (mid-grey image, small sigma): E[err] = mse(f, x) on held pixels + sigma^2.
    g = torch.Generator().manual_seed(4)
    clean = 0.4 + 0.2 * torch.rand((1, 3, 256, 256), generator=g)
    sigma = 10.0
    obs = Denoise(sigma).corrupt(clean, seed=1)
    held = holdout_mask(obs, 0)
    f = clean + 0.03 * torch.randn(clean.shape, generator=g)
    err, _ = heldout_error(_result(f, {}, {}), obs, held)
    true = float((((f - clean) * held) ** 2).sum() / (held.sum() * 3))
    # n ~ 39 000 held values: the estimate's standard error is about 1.5 % of sigma^2
    assert err - (sigma / 255) ** 2 == pytest.approx(true, abs=0.06 * (sigma / 255) ** 2)


def test_select_validated_picks_the_least_error_then_the_better_metric():
    gs = [BASELINES["nasdip-denoise"], BASELINES["nasdip-inpaint"], BASELINES["nasdip-sr"]]
    members = [CohortMember(gs[0], 2.0), CohortMember(gs[1], 1.0), CohortMember(gs[2], float("nan"))]
    assert select_validated(members, {gs[0]: 0.02, gs[1]: 0.01, gs[2]: 0.03}) == 1
    assert members[1].selected and not members[0].selected
    assert members[1].selection_psnr == pytest.approx(20.0)
    members = [CohortMember(gs[0], 2.0), CohortMember(gs[1], 1.0)]
    assert select_validated(members, {gs[0]: 0.01, gs[1]: 0.01}) == 1  # tie: the better metric value


def test_paired_standard_error_matches_float64_numpy():
    np = pytest.importorskip("numpy")
    g = torch.Generator().manual_seed(6)
    obs = Denoise(25).corrupt(torch.rand((1, 3, 48, 40), generator=g), seed=2)
    held = holdout_mask(obs, 3)
    a, b = torch.rand((1, 3, 48, 40), generator=g), torch.rand((1, 3, 48, 40), generator=g)
    y, m = obs.y.double().numpy(), np.broadcast_to(held.numpy().astype(bool), (1, 3, 48, 40))
    d = ((a.double().numpy() - y) ** 2 - (b.double().numpy() - y) ** 2)[m]
    want = d.std(ddof=1) / math.sqrt(d.size)
    got = paired_standard_error(a, b, obs, held)
    assert math.isfinite(got) and got == pytest.approx(want, rel=1e-9)
    assert paired_standard_error(a, a, obs, held) == 0.0


def test_paired_standard_error_covers_the_noise_of_the_held_out_difference():
    # Two fixed outputs, many noise draws: the held-out error difference varies
    # across draws by about the standard error computed from one draw.
    g = torch.Generator().manual_seed(7)
    clean = 0.3 + 0.4 * torch.rand((1, 3, 64, 64), generator=g)
    a = clean + 0.02 * torch.randn(clean.shape, generator=g)
    b = clean + 0.03 * torch.randn(clean.shape, generator=g)
    held = holdout_mask(Denoise(25).corrupt(clean, seed=0), 0)
    diffs, ses = [], []
    for seed in range(60):
        obs = Denoise(25).corrupt(clean, seed=seed)
        ea, _ = heldout_error(_result(a, {}, {}), obs, held)
        eb, _ = heldout_error(_result(b, {}, {}), obs, held)
        diffs.append(ea - eb)
        ses.append(paired_standard_error(a, b, obs, held))
    spread = float(torch.tensor(diffs).std())
    assert 0.7 < spread / float(torch.tensor(ses).mean()) < 1.3


def test_select_validated_keeps_the_fixed_network_unless_a_member_beats_it_clearly():
    fixed, other, third = BASELINES["nasdip-denoise"], BASELINES["nasdip-inpaint"], BASELINES["nasdip-sr"]

    def members():
        return [CohortMember(other, 1.0), CohortMember(third, 2.0), CohortMember(fixed, 3.0)]

    errors = {fixed: 0.0100, other: 0.0098, third: 0.0099}
    # both below the fixed network by less than MARGIN_SE standard errors: the fixed network
    ms = members()
    assert select_validated(ms, errors, fixed=fixed, se={other: 0.0002, third: 0.0002}) == 2 and ms[2].selected
    # `third` clears the margin, `other` (lower error) does not: `third`
    se = {other: 0.0002 / MARGIN_SE * 1.01, third: 0.0001 / MARGIN_SE * 0.99}
    assert select_validated(members(), errors, fixed=fixed, se=se) == 1
    # both clear it: the least error
    assert select_validated(members(), errors, fixed=fixed, se={other: 1e-6, third: 1e-6}) == 0
    # a NaN standard error never clears the margin
    assert select_validated(members(), errors, fixed=fixed, se={other: float("nan"), third: float("nan")}) == 2
    # without the fixed network among the members, or without standard errors: the least error
    assert select_validated(members()[:2], errors, fixed=fixed, se={other: 1.0, third: 1.0}) == 0
    assert select_validated(members(), errors) == 0


def test_heldout_scores_measure_every_member_against_the_fixed_network():
    g = torch.Generator().manual_seed(8)
    obs = Denoise(25).corrupt(torch.rand((1, 3, 32, 32), generator=g), seed=0)
    held = holdout_mask(obs, 1)
    fixed, other = BASELINES["nasdip-denoise"], BASELINES["nasdip-inpaint"]
    outs = {fixed: torch.rand((1, 3, 32, 32), generator=g), other: torch.rand((1, 3, 32, 32), generator=g)}
    better = torch.rand((1, 3, 32, 32), generator=g)
    results = {fixed: _result(outs[fixed], {}, {}), other: _result(outs[other], {10: better}, {})}
    sc = heldout_scores(results, obs, held, fixed=fixed)
    best_other = min([(heldout_error(_result(o, {}, {}), obs, held)[0], o) for o in (outs[other], better)],
                     key=lambda t: t[0])[1]
    assert math.isnan(sc[fixed].se_vs_fixed)
    assert sc[other].se_vs_fixed == pytest.approx(paired_standard_error(best_other, outs[fixed], obs, held), rel=1e-12)
    assert (sc[other].error, sc[other].at) == heldout_error(results[other], obs, held)
    assert all(math.isnan(s.se_vs_fixed) for s in heldout_scores(results, obs, held).values())


def test_snapshot_steps():
    assert snapshot_steps(35) == [10, 20, 30, 35] and snapshot_steps(30) == [10, 20, 30]


def test_discrepancy_stop_does_not_fire_before_its_start():
    clean = torch.full((1, 1, 64, 64), 0.5)
    obs = Denoise(25).corrupt(clean, seed=0)
    fired = {}
    for start in (0, 60):
        det = make_detector(EarlyStopping(start=start), obs)
        fired[start] = next((it for it in range(1, 200) if det.update(it, clean, clean, 0.0)), None)
    assert fired[0] == 50 and fired[60] == 60  # the clean image is within the noise level at once
    assert "start" not in EarlyStopping().parameters() and EarlyStopping(start=7).parameters()["start"] == 7
    with pytest.raises(InputError, match="start"):
        EarlyStopping(start=-1)


@pytest.mark.parametrize("selection", ["paper", "validated"])
def test_search_picks_with_each_selection(small, selection):
    obs = Denoise(25).corrupt(small, seed=0)
    settings = preset("quick", **TINY, selection=selection)
    s = search_picks(obs, settings, seed=0, device=torch.device("cpu"), quiet=True)
    anchor = BASELINES["nasdip-denoise"]
    genotypes = [m.genotype for m in s.cohort]
    picked = next(m for m in s.cohort if m.selected)
    assert sum(m.selected for m in s.cohort) == 1
    if selection == "paper":
        assert s.genotype == picked.genotype
        assert len(s.cohort) == 2 and s.stop_start == 0
        assert s.final_settings(settings) is settings
        return
    assert genotypes[-1] == anchor and len(s.cohort) == 3  # two best-scoring and NAS-DIP's genotype
    # the pick has the highest held-out PSNR (least error), or is NAS-DIP's genotype, kept because no
    # member beat it by the margin (select_validated's cases are tested above)
    best = max(s.cohort, key=lambda m: m.selection_psnr)
    assert picked is best or picked.genotype == anchor
    assert all(math.isfinite(m.selection_psnr) for m in s.cohort)
    if picked.genotype == anchor:  # kept: NAS-DIP's network by name, its own stop
        assert s.genotype == "nasdip-denoise" and s.stop_start == 0 and s.final_settings(settings) is settings
        # with the fixed stop start, held to its cohort run's best step (on a fast fit only)
        held = search_picks(obs, replace(settings, fixed_stop_start=True), seed=0, device=torch.device("cpu"),
                            quiet=True)
        assert held.genotype == s.genotype and held.stop_start in snapshot_steps(20)
        assert held.final_settings(settings).early_stopping == replace(
            settings.early_stopping, start=held.stop_start, start_met_by=FAST_FIT_STEPS)
    else:  # a searched member: the final stop not before its best step on the cohort problem
        assert s.genotype == picked.genotype and s.stop_start in snapshot_steps(20)
        final = s.final_settings(settings)
        assert final.early_stopping == replace(settings.early_stopping, start=s.stop_start)
    assert s.final_settings(replace(settings, early_stopping=None)).early_stopping is None
    # super-resolution has no pixel to hold out: the validated selection keeps NAS-DIP's SR genotype,
    # training no cohort
    sr = SuperResolve(4).corrupt(small, seed=0)
    s_sr = search_picks(sr, settings, seed=0, device=torch.device("cpu"), quiet=True)
    assert len(s_sr.cohort) == 3 and s_sr.genotype == "nasdip-sr" and s_sr.stop_start == 0
    assert s_sr.cohort[-1].genotype == BASELINES["nasdip-sr"]
    assert [m.selected for m in s_sr.cohort] == [False, False, True]
    assert all(m.train_seconds == 0.0 for m in s_sr.cohort)


def test_sr_default_restores_nasdip_as_arch_nasdip_sr_does(small):
    # the validated selection's SR pick is NAS-DIP's network with its own 32-channel code:
    # the same image as restore(arch="nasdip-sr")
    from isnas_fast import restore

    low = SuperResolve(4).corrupt(small, seed=0).y
    kw = dict(iterations=6, candidates=3, cohort_size=2, quiet=True)
    searched = restore(low, "sr", factor=4, **kw)
    fixed = restore(low, "sr", factor=4, arch="nasdip-sr", **kw)
    assert searched.genotype == "nasdip-sr" and searched.run.in_channels == 32
    assert torch.equal(searched.tensor, fixed.tensor)


@pytest.mark.parametrize("task", ["denoise", "inpaint"])
def test_kept_fixed_network_restores_as_its_arch_does(small, monkeypatch, task):
    """When no searched member beats NAS-DIP's genotype by the margin, the restore is
    NAS-DIP's network by name: without the fixed stop start the same image as
    ``restore(arch="nasdip-<task>")`` (its 32-channel code, its own stop); a searched
    pick keeps the image's channels and the stop start of its cohort run."""
    import isnas_fast.search.pipeline as pipeline
    from isnas_fast import restore

    fixed = BASELINES[f"nasdip-{task}"]
    kw = dict(iterations=12, candidates=3, cohort_size=2, cohort_iterations=20, quiet=True, seed=1)
    if task == "denoise":
        corrupt = Denoise(25).corrupt(small, seed=0)
        args = dict(sigma=25)
    else:
        corrupt = Inpaint(50).corrupt(small, seed=0)
        args = dict(mask=corrupt.mask[0, 0])
    real = pipeline.select_validated
    monkeypatch.setattr(pipeline, "select_validated",
                        lambda members, errors, **k: next(i for i, m in enumerate(members) if m.genotype == fixed))
    kept = restore(corrupt.y, task, **args, **kw)
    by_name = restore(corrupt.y, task, **args, arch=f"nasdip-{task}", **kw)
    assert kept.genotype == f"nasdip-{task}" and kept.run.in_channels == 32 and kept.search.stop_start == 0
    assert torch.equal(kept.tensor, by_name.tensor)
    # the fixed stop start: the kept network's stop waits for its cohort run's best step when it
    # fits the noise level fast; a run too short to stop returns the same image (denoising only:
    # the discrepancy stop needs a noise level)
    held = restore(corrupt.y, task, **args, **kw, fixed_stop_start=True)
    es = held.settings.early_stopping
    if task == "denoise":
        assert held.genotype == f"nasdip-{task}" and 0 < held.search.stop_start <= kw["cohort_iterations"]
        assert held.search.stop_start_met_by == FAST_FIT_STEPS
        assert (es.start, es.start_met_by) == (held.search.stop_start, FAST_FIT_STEPS)
    else:
        assert held.search.stop_start == 0 and (es is None or es.start == 0)
    assert torch.equal(held.tensor, by_name.tensor)
    monkeypatch.setattr(pipeline, "select_validated",
                        lambda members, errors, **k: next(i for i, m in enumerate(members) if m.genotype != fixed))
    other = restore(corrupt.y, task, **args, **kw)
    assert other.genotype != fixed and other.run.in_channels == 3 and other.search.stop_start > 0
    monkeypatch.setattr(pipeline, "select_validated", real)


def test_cohort_ranks_the_run_only_when_it_is_a_quarter_of_it():
    from isnas_fast.search.validation import MIN_COHORT_SHARE, cohort_ranks_the_run

    assert MIN_COHORT_SHARE == 0.25
    assert cohort_ranks_the_run(300, 1200, "denoise")
    assert cohort_ranks_the_run(300, 2400, "denoise")  # a long final run is capped at the task's paper count
    assert not cohort_ranks_the_run(299, 1200, "denoise")
    assert not cohort_ranks_the_run(300, 9500, "inpaint")
    assert cohort_ranks_the_run(300, 1000, "inpaint")


def test_short_cohort_keeps_nasdip_for_inpainting_without_training_it(small):
    """The quick preset's cohort (300 steps) is too short to rank networks for 9500 inpainting
    steps: the validated selection keeps NAS-DIP's network by name and trains no cohort,
    restoring what ``restore(arch="nasdip-inpaint")`` restores."""
    from isnas_fast import restore

    corrupt = Inpaint(50).corrupt(small, seed=0)
    settings = preset("quick", **{**TINY, "final_iterations": 100})  # 20 cohort steps < 25
    s = search_picks(corrupt, settings, seed=0, device=torch.device("cpu"), quiet=True)
    assert s.genotype == "nasdip-inpaint" and s.stop_start == 0
    assert s.cohort[-1].genotype == BASELINES["nasdip-inpaint"] and s.cohort[-1].selected
    assert all(m.train_seconds == 0.0 for m in s.cohort)
    kw = dict(iterations=8, candidates=3, cohort_size=2, cohort_iterations=1, quiet=True, mask=corrupt.mask[0, 0])
    searched = restore(corrupt.y, "inpaint", **kw)
    fixed = restore(corrupt.y, "inpaint", arch="nasdip-inpaint", **kw)
    assert searched.genotype == "nasdip-inpaint" and torch.equal(searched.tensor, fixed.tensor)
    # a cohort long enough validates (its pick may be any member)
    long_enough = search_picks(corrupt, preset("quick", **TINY), seed=0, device=torch.device("cpu"), quiet=True)
    assert any(m.train_seconds > 0 for m in long_enough.cohort)
