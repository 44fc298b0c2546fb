"""The DIP loop's CUDA paths compute what the eager loop computes (``bench/gpu_check.py``
section ``correctness_dip``; its timings stay in gpu_check).

* The cohort that gpu_check times (the first 15 of the 522 genotypes, width
  128, 64x64, reference kernel backend), stepped together as one CUDA graph
  with a stream per member: every member's first loss -- the same eager
  forward pass as its solo run's -- within 1e-5 relative of its eager solo
  run's.  (tests/test_fast_dip.py follows three small members' whole
  trajectories.)
* The bf16 autocast DIP on each path (eager, CUDA graph, compiled): finite
  losses, a float32 output in [0, 1], and a first loss within 1e-2 relative
  of the float32 eager run's (the same forward pass in bf16 rounding;
  2e-4 to 3e-4 measured on the CPU at widths 16 and 64).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch


def _net(arch, width: int, device: torch.device, seed: int, cin: int):
    from isnas_fast.device import seeded
    from isnas_fast.network import build_network

    with seeded(seed, device):
        return build_network(arch, cin, 3, width, device=device)


@pytest.fixture
def observation(small, target):
    from isnas_fast.tasks import Denoise

    return Denoise(25).corrupt(small, seed=0).to(target.device)


def test_graph_cohort_first_losses_match_solo_runs(observation, target, kernel_backend):
    from isnas_fast.dip import DIPSettings, fit_dip, fit_dip_group
    from isnas_fast.genotype import builtin_genotypes

    target.needs_gpu("a CUDA graph")
    kernel_backend("reference")
    k, width, steps = 15, 128, 4
    archs, seeds = [str(a) for a in builtin_genotypes()[:k]], list(range(k))
    nets = [_net(a, width, target.device, s, 3) for a, s in zip(archs, seeds)]
    group = fit_dip_group(nets, observation, DIPSettings(steps), seeds=seeds, quiet=True, cuda_graph=True)
    for a, s, member in zip(archs, seeds, group):
        alone = fit_dip(_net(a, width, target.device, s, 3), observation, DIPSettings(steps), seed=s, quiet=True,
                        compile=False)
        assert np.isfinite(member.losses).all() and len(member.losses) == steps
        gap = abs(member.losses[0] - alone.losses[0]) / abs(alone.losses[0])
        assert gap <= 1e-5, f"{a}: first loss {member.losses[0]!r} vs alone {alone.losses[0]!r} ({gap:.3g})"


@pytest.mark.parametrize("path", ["eager", "graph", "compiled"])
def test_bf16_dip_runs_and_starts_where_fp32_does(path, observation, target):
    from isnas_fast.dip import DIPSettings, fit_dip

    if path == "graph":
        target.needs_gpu("a CUDA graph")
    if path == "compiled":
        target.needs_gpu("compiling (minutes on a CPU)")
        torch._dynamo.reset()
    width, steps = target.size(64, 16), target.size(10, 3)
    options = {"eager": dict(compile=False), "graph": dict(cuda_graph=True), "compiled": dict(compile=True)}[path]
    fp32 = fit_dip(_net("nasdip-denoise", width, target.device, 0, 32), observation, DIPSettings(1), quiet=True,
                   compile=False, precision="fp32")
    bf16 = fit_dip(_net("nasdip-denoise", width, target.device, 0, 32), observation, DIPSettings(steps), quiet=True,
                   precision="bf16", **options)
    assert bf16.precision == "bf16" and bf16.compiled == (path == "compiled")
    assert len(bf16.losses) == steps and np.isfinite(bf16.losses).all()
    assert bf16.output.dtype == torch.float32 and bool(torch.isfinite(bf16.output).all())
    assert 0 <= bf16.output.min().item() and bf16.output.max().item() <= 1
    gap = abs(bf16.losses[0] - fp32.losses[0]) / abs(fp32.losses[0])
    assert gap <= 1e-2, f"first loss in bf16 {bf16.losses[0]!r} vs fp32 {fp32.losses[0]!r} ({gap:.3g})"
