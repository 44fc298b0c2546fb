"""DIP loop: eager vs compiled step; a cohort one by one vs together (docs/design.md §6, §7).

Groups (``path``: ``reference`` / ``fast``):

* ``dip_step/nasdip-denoise/w<W>/<S>x<S>``: one network (the NAS-DIP
  denoising genotype, 32-channel code); reference = the eager step, fast =
  the ``torch.compile`` step (``fit_dip(compile=...)``).  Needs
  ``--bench-compile`` (both sides are skipped without it: a CPU compile
  takes 1-2 min per width).  ``compile_s`` is the compiling run's first
  step, a cold compile in a fresh Inductor cache (unless
  ``TORCHINDUCTOR_CACHE_DIR`` is set).
* ``cohort/k<K>/w<W>/<S>x<S>``: the first K (``--bench-cohort``, default 4)
  of the 522 genotypes, 3-channel codes; reference = the K networks trained
  one after another (the sum of their per-step medians), fast = trained
  together as one program (``fit_dip_group``: on a CPU one shard of members
  per intra-op thread), both eager.

Timing: a round is one whole run of ``--bench-steps`` steps (default 30) on
fresh networks built outside the timing; one warm-up round (the compiling
run of the compiled path), then ``--bench-rounds`` rounds (default 3), with
``benchmark.pedantic``.  pytest-benchmark's statistics are whole-run times;
``extra_info["ms"]`` is the per-step median after 5 warm-up steps, pooled
over the rounds: the per-step figure report.py shows.  The two sides of a
group run one after the other (pytest-benchmark runs one target per test),
not interleaved.

Check: the same seed gives the same initialisation and input code, so the
first loss (a pure forward pass) agrees with the eager reference's: within
1e-5 relative in float32 (Inductor reorders float32 sums; a cohort member
runs the same ops as alone), 1e-2 in TF32 / bf16 (the CUDA default is TF32).

Options: ``--bench-size`` (default 64), ``--bench-width`` (32,64),
``--bench-steps``, ``--bench-rounds``, ``--bench-cohort``, ``--bench-compile``.
"""
from __future__ import annotations

import pytest
import torch

import _common as common

ARCH = "nasdip-denoise"
WARMUP_STEPS = 5


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = [(s, w) for s in common.option_list(metafunc.config, "--bench-size", 64)
                 for w in common.option_list(metafunc.config, "--bench-width", "32,64")]
        metafunc.parametrize("case", cases, ids=[f"w{w}-{s}" for s, w in cases])


def _problem(size: int, device: torch.device):
    from isnas_fast.tasks import Denoise

    g = torch.Generator().manual_seed(0)
    clean = torch.nn.functional.avg_pool2d(torch.rand(1, 3, size, size, generator=g), 5, 1, 2)  # some structure
    return Denoise(25).corrupt(clean, seed=0).to(device)


def _net(arch, width: int, device: torch.device, seed: int, cin: int):
    from isnas_fast.device import seeded
    from isnas_fast.network import build_network

    with seeded(seed, device):
        return build_network(arch, cin, 3, width, device=device)


def _first_loss_bound(precision: str) -> float:
    return 1e-5 if precision == "fp32" else 1e-2


def _source(steps: int) -> str:
    return f"per-step median after {min(WARMUP_STEPS, steps - 1)} warm-up steps"


def _rounds(benchmark, make, run, rounds: int) -> tuple[list, list]:
    """``benchmark.pedantic`` over whole runs: ``make()`` (untimed) builds the
    networks, ``run(nets)`` trains them and returns what it records.  Returns
    (every run's record in order, the timed rounds' records); with
    ``--benchmark-disable`` the one run counts as timed."""
    record: list = []
    benchmark.pedantic(lambda nets: record.append(run(nets)), setup=lambda: ((make(),), {}),
                       rounds=rounds, warmup_rounds=1, iterations=1)
    return record, record[-rounds:]


@pytest.mark.parametrize("path", common.PATHS)
def test_dip_step(case, path, opts, device, agreement, benchmark, needs_compile, fresh_inductor_cache):
    from isnas_fast import kernels
    from isnas_fast.dip import DIPSettings, fit_dip

    size, width = case
    steps, rounds = opts.steps or 30, opts.rounds or 3
    group = f"dip_step/{ARCH}/w{width}/{size}x{size}"
    obs = _problem(size, device)
    compiled = path == "fast"
    if compiled:
        torch._dynamo.reset()

    def run(net):
        return common.step_times(lambda cb: fit_dip(net, obs, DIPSettings(steps), quiet=True, compile=compiled,
                                                    callback=cb), device)

    benchmark.group = group
    record, timed = _rounds(benchmark, lambda: _net(ARCH, width, device, 0, 32), run, rounds)
    res = record[0][0]
    assert res.compiled == compiled

    if group not in agreement:
        eager = res if not compiled else fit_dip(_net(ARCH, width, device, 0, 32), obs, DIPSettings(1), quiet=True,
                                                 compile=False)
        agreement[group] = eager.losses[0]
    ref_loss = agreement[group]
    err = abs(res.losses[0] - ref_loss) / abs(ref_loss)
    bound = _first_loss_bound(res.precision)
    assert err <= bound, f"{group}: first loss {res.losses[0]!r} vs eager {ref_loss!r}: {err:.3g} > {bound:.3g}"

    benchmark.extra_info.update(
        path=path, device=common.device_label(device), backend=kernels.backend(device=device),
        reference="eager step", fast="torch.compile step", precision=res.precision, steps=steps, rounds=len(timed),
        ms=common.median_of_steps([t for _, t in timed], WARMUP_STEPS), ms_source=_source(steps),
        first_loss=res.losses[0], first_loss_rel_vs_eager=err, bound=bound,
        **({"compile_s": round(record[0][1][0] / 1e3, 2), "inductor_cache": fresh_inductor_cache} if compiled else {}))


@pytest.mark.parametrize("path", common.PATHS)
def test_cohort(case, path, opts, device, agreement, benchmark):
    from isnas_fast import kernels
    from isnas_fast.dip import DIPSettings, fit_dip, fit_dip_group
    from isnas_fast.genotype import builtin_genotypes

    size, width = case
    k, steps, rounds = opts.cohort, opts.steps or 30, opts.rounds or 3
    group = f"cohort/k{k}/w{width}/{size}x{size}"
    obs = _problem(size, device)
    archs, seeds = builtin_genotypes()[:k], list(range(k))

    def make():
        return [_net(a, width, device, s, 3) for a, s in zip(archs, seeds)]

    def one_by_one(nets):
        runs = [common.step_times(lambda cb: fit_dip(n, obs, DIPSettings(steps), seed=s, quiet=True, compile=False,
                                                     callback=cb), device) for n, s in zip(nets, seeds)]
        return [r for r, _ in runs], [t for _, t in runs]

    def together(nets):
        res, t = common.step_times(lambda cb: fit_dip_group(nets, obs, DIPSettings(steps), seeds=seeds, quiet=True,
                                                            compile=False, callback=cb), device)
        return res, [t]

    benchmark.group = group
    record, timed = _rounds(benchmark, make, one_by_one if path == "reference" else together, rounds)
    results = record[0][0]
    if path == "reference":
        ms = sum(common.median_of_steps([r[1][m] for r in timed], WARMUP_STEPS) for m in range(k))
    else:
        ms = common.median_of_steps([r[1][0] for r in timed], WARMUP_STEPS)

    if group not in agreement:
        solo = results if path == "reference" else one_by_one(make())[0]
        agreement[group] = [r.losses[0] for r in solo]
    errs = [abs(r.losses[0] - want) / abs(want) for r, want in zip(results, agreement[group])]
    bound = _first_loss_bound(results[0].precision)
    assert max(errs) <= bound, f"{group}: members' first losses vs alone: {max(errs):.3g} > {bound:.3g}"

    benchmark.extra_info.update(
        path=path, device=common.device_label(device), backend=kernels.backend(device=device),
        reference=f"{k} networks one after another (sum of per-step medians)",
        fast=f"{k} networks together (fit_dip_group)", members=k, steps=steps, rounds=len(timed),
        precision=results[0].precision, ms=ms, ms_source=_source(steps),
        first_loss_max_rel_vs_alone=max(errs), bound=bound)
