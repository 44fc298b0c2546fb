"""Search pipeline (docs/design.md §1, §5): scoring, cohort, selection without ground truth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from isnas_fast.errors import InputError
from isnas_fast.genotype import Genotype
from isnas_fast.search import (
    PRESETS,
    SearchSettings,
    candidate_list,
    preset,
    run_search,
    score_candidates,
    select_member,
    selection_weights,
)
from isnas_fast.tasks import Denoise, SuperResolve


def test_selection_weights_formula():
    w = selection_weights(torch.tensor([1.0, 3.0, 2.0, 5.0]))
    assert torch.allclose(w, torch.tensor([1.0, 0.5, 0.75, 0.0], dtype=torch.float64))
    assert torch.equal(selection_weights(torch.tensor([2.0, 2.0])), torch.ones(2, dtype=torch.float64))


def test_select_member_constructed_case():
    rng = np.random.default_rng(0)
    base = rng.random((3, 16, 16))
    outs = np.stack([base + 0.01 * rng.standard_normal(base.shape) for _ in range(3)] + [rng.random((3, 16, 16))])
    outs = np.clip(outs, 0, 1).astype(np.float32)
    metric = np.array([2.0, 1.0, 3.0, 9.0])  # the outlier has the worst metric (weight 0)
    idx, scores, avg = select_member(torch.from_numpy(outs), torch.from_numpy(metric))
    # Independent computation with NumPy.
    w = (metric.max() - metric) / (metric.max() - metric.min())
    a = (w[:, None, None, None] * outs.astype(np.float64)).sum(0) / w.sum()
    ps = [10 * np.log10(1.0 / np.mean((o - a.astype(np.float32)) ** 2)) for o in outs]
    assert idx == int(np.argmax(ps)) and idx != 3
    assert np.allclose(scores.numpy(), ps, atol=1e-3)
    assert np.allclose(avg[0].numpy(), a, atol=1e-6)


def test_select_member_y_channel_differs_from_rgb():
    # Two candidates: one off in blue only (small Y error), one off in green (large Y error).
    base = torch.full((1, 3, 8, 8), 0.5)
    blue, green = base.clone(), base.clone()
    blue[:, 2] += 0.2
    green[:, 1] += 0.2
    outs = torch.cat([blue, green, base])
    idx, scores_y, _ = select_member(outs, torch.tensor([1.0, 1.0, 1.0]), y_channel=True)
    _, scores_rgb, _ = select_member(outs, torch.tensor([1.0, 1.0, 1.0]), y_channel=False)
    assert scores_y[0] > scores_y[1]
    assert abs(float(scores_rgb[0] - scores_rgb[1])) < 1e-6


def test_presets_and_overrides():
    q = preset("quick", width=32, cohort_size=None)
    assert q.width == 32 and q.cohort_size == PRESETS["quick"].cohort_size
    p = preset("paper")
    assert (p.width, p.cohort_size, p.candidates, p.num_candidates) == (128, 15, "random5000", None)
    with pytest.raises(InputError, match="unknown preset"):
        preset("fast")
    with pytest.raises(InputError, match="metric"):
        preset("quick", metric="psnr")
    with pytest.raises(InputError, match="width"):
        preset("quick", width=20)
    assert preset("paper", cuda_graph=True).cuda_graph and not PRESETS["paper"].cuda_graph
    with pytest.raises(InputError, match="alternatives"):
        preset("quick", compile=True, cuda_graph=True)


def test_candidate_list_sampling_is_seeded_subset():
    a, _ = candidate_list("builtin", 10, seed=1)
    b, _ = candidate_list("builtin522", 10, seed=1)
    c, _ = candidate_list("builtin", 10, seed=2)
    assert a == b != c and len(a) == 10
    full, skipped = candidate_list("builtin522")
    assert len(full) == 522 and skipped == 0 and set(a) <= set(full)


def test_score_candidates_matches_direct_metric(small):
    obs = Denoise(25).corrupt(small, seed=0)
    gl = [Genotype.parse("64,0001010110110101110010111"), Genotype.parse("172,0000011001001001100111101")]
    s1 = score_candidates(obs, gl, ["psd_db_strip_mse", "psd_strip_hist_emd"], width=16, seed=0, quiet=True)
    s2 = score_candidates(obs, gl[::-1], ["psd_db_strip_mse", "psd_strip_hist_emd"], width=16, seed=0, quiet=True)
    assert s1.shape == (2, 2) and bool(torch.isfinite(s1).all())
    assert torch.equal(s1, s2.flip(0))  # a genotype's score does not depend on its position


def test_sr_scoring_goes_through_downsampler(small):
    obs = SuperResolve(2).corrupt(small, seed=0)
    g = [Genotype.parse("64,0001010110110101110010111")]
    s = score_candidates(obs, g, ["psd_db_mse"], width=16, quiet=True)
    assert s.shape == (1, 1) and obs.y.shape[-1] == 32


def test_run_search_tiny_no_ground_truth_influence(small):
    obs = Denoise(25).corrupt(small, seed=0)
    settings = SearchSettings(width=16, candidates="random", num_candidates=3, cohort_size=2,
                              cohort_iterations=4, final_iterations=4)
    a = run_search(obs, settings, seed=0, quiet=True)
    b = run_search(obs, settings, seed=0, quiet=True, ground_truth=small)
    assert a.genotype == b.genotype and torch.equal(a.final.dip.output, b.final.dip.output)
    assert [m.metric_value for m in a.cohort] == sorted(m.metric_value for m in a.cohort)
    assert sum(m.selected for m in a.cohort) == 1 and len(a.cohort) == 2
    assert a.genotype == next(m.genotype for m in a.cohort if m.selected)
    assert a.final.dip.output.shape == small.shape
    assert set(a.timings_s) == {"score", "cohort", "final"}
    assert b.final.dip.psnr_curve is not None and a.final.dip.psnr_curve is None


def test_several_metrics_score_once_train_the_union_once_and_pick_per_metric(small, monkeypatch, one_torch_thread):
    from isnas_fast.search import cohort as cohort_module
    from isnas_fast.search import pipeline

    obs = Denoise(25).corrupt(small, seed=0)
    trained: list[list] = []
    real = cohort_module.train_cohort
    monkeypatch.setattr(pipeline, "train_cohort", lambda g, *a, **k: trained.append(list(g)) or real(g, *a, **k))
    metrics = ("psd_db_strip_mse", "psd_strip_hist_emd", "random")
    settings = SearchSettings(width=16, candidates="random", num_candidates=5, cohort_size=2, cohort_iterations=3,
                              final_iterations=3, metric=",".join(metrics), final="all")
    r = run_search(obs, settings, seed=0, quiet=True)
    assert r.metrics == metrics and r.metric == metrics[0] and r.scores.shape == (5, 3)
    union = {m.genotype for c in r.cohorts.values() for m in c}
    assert len(trained) == 1 and sorted(trained[0]) == sorted(union)  # each genotype trained once
    for j, m in enumerate(metrics):
        cohort = r.cohorts[m]
        best = sorted(range(5), key=lambda i: (float(r.scores[i, j]), r.candidates[i]))[:2]
        assert [c.genotype for c in cohort] == [r.candidates[i] for i in best]
        assert sum(c.selected for c in cohort) == 1 and r.picks[m] in [c.genotype for c in cohort]
    assert r.genotype == r.picks[metrics[0]] and r.final is r.finals[str(r.genotype)]
    assert set(r.finals) == {str(g) for g in r.picks.values()}
    # The first metric alone picks the same genotype: other metrics change nothing of its cohort.
    alone = run_search(obs, SearchSettings(width=16, candidates="random", num_candidates=5, cohort_size=2,
                                           cohort_iterations=3, final_iterations=3), seed=0, quiet=True)
    # (with one torch thread: then members of a group compute as they do alone)
    assert alone.genotype == r.genotype and torch.equal(alone.final.dip.output, r.final.dip.output)


def test_sr_cohort_problem_keeps_the_low_resolution_image_at_64px_or_full(small):
    from isnas_fast.search import SearchSettings as S

    lr = SuperResolve(4).observe(torch.rand(1, 3, 48, 40))  # smaller than 64: full resolution
    assert lr.cohort_problem(64) is lr
    big = SuperResolve(4).observe(torch.rand(1, 3, 96, 128))
    small_lr = big.cohort_problem(64)
    assert tuple(small_lr.y.shape[-2:]) == (64, 88) and small_lr.output_size == (256, 352)
    den = Denoise(25).observe(torch.rand(1, 3, 128, 192))
    assert den.cohort_problem(64).output_size == (64, 96)  # denoising: the output's short side
    r = run_search(SuperResolve(2).corrupt(small, seed=0),
                   S(width=16, candidates="random", num_candidates=2, cohort_size=2, cohort_iterations=2,
                     final_iterations=2), quiet=True)
    assert r.stage_sizes["cohort"] == {"output": [64, 64], "observation": [32, 32]}
    assert r.stage_sizes["final"] == r.stage_sizes["score"] == {"output": [64, 64], "observation": [32, 32]}


def test_ensemble_averages_the_best_members_with_the_selection_weights(small):
    from isnas_fast import restore
    from isnas_fast.search import selection_weights

    obs = Denoise(25).corrupt(small, seed=0)
    r = restore(obs.y, "denoise", ground_truth=small, models="random", num_candidates=4, cohort_size=3,
                cohort_iterations=3, iterations=3, ensemble=2, quiet=True)
    ens = r.search.ensemble
    cohort = r.search.cohort
    ranked = sorted(cohort, key=lambda m: -m.selection_psnr)
    assert ens.genotypes == [m.genotype for m in ranked[:2]] and ens.genotypes[0] == r.genotype
    w = selection_weights(torch.tensor([m.metric_value for m in ranked[:2]]))
    w = w / w.sum() if float(w.sum()) > 0 else torch.full((2,), 0.5, dtype=torch.float64)
    outs = [r.search.finals[str(g)].dip.output for g in ens.genotypes]
    want = (w[0] * outs[0].double() + w[1] * outs[1].double()).float().clamp(0, 1)
    assert torch.allclose(r.tensor, want, atol=1e-6) and r.run.genotype == str(r.genotype)
    rep = r.report()
    assert rep["ensemble"]["genotypes"] == [str(g) for g in ens.genotypes] and len(rep["ensemble"]["member_psnr"]) == 2
    with pytest.raises(InputError, match="ensemble"):
        SearchSettings(ensemble=0).validate()
