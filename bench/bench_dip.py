"""DIP loop benchmarks (issue: fast DIP loop; DESIGN §7).

Side by side in one run, medians of per-step times after warm-up:

- ``dip_step``: one network, eager step vs compiled step (compile time is
  reported separately in ``compile_s`` and excluded from ``fast_ms``); after
  the compiling run, ``--rounds`` pairs of eager and compiled runs alternate
  so that drift in the machine's speed hits both sides.
- ``cohort``: K networks trained one after another (sum of their per-step
  medians) vs together as one program (:func:`isnas_fast.dip.fit_dip_group`),
  per group step; eager by default, ``--cohort-compile`` compiles both sides.

Usage (CPU defaults: 64x64, widths 32 and 64, K = 4)::

    python bench/bench_dip.py                       # eager vs compiled + cohort
    python bench/bench_dip.py --skip-compile        # cohort rows only (no minutes of compiling)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

from isnas_fast.device import seeded  # noqa: E402
from isnas_fast.dip import DIPSettings, fit_dip, fit_dip_group  # noqa: E402
from isnas_fast.genotype import builtin_genotypes  # noqa: E402
from isnas_fast.network import build_network  # noqa: E402
from isnas_fast.tasks import Denoise  # noqa: E402

ARCH = "nasdip-denoise"


def _problem(size: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, size, size, generator=g)
    clean = torch.nn.functional.avg_pool2d(clean, 5, 1, 2)  # some spatial structure
    return Denoise(25).corrupt(clean, seed=0).to(device)


def _net(arch, width, device, seed=0, cin=None):
    with seeded(seed, device):
        return build_network(arch, cin or (32 if arch == ARCH else 3), 3, width, device=device)


def bench_step(size, width, steps, warmup, device, compile_too: bool, rounds: int = 3) -> list[dict]:
    """Eager vs compiled per-step medians of one network (no rows without compile_too).

    After one compiling run, ``rounds`` pairs of runs (eager, then compiled,
    each a fresh network of ``steps`` steps) interleave the two sides, so that
    drift in the machine's speed hits both; the medians pool every round's
    per-step times after ``warmup`` steps.  The first compiled run's first
    step is the compile time, reported as ``compile_s``.
    """
    if not compile_too:
        return []
    obs = _problem(size, device)

    def run(compiled: bool, seed: int) -> list[float]:
        return common.step_times(lambda cb: fit_dip(_net(ARCH, width, device, seed), obs, DIPSettings(steps),
                                                    quiet=True, compile=compiled, callback=cb), device)[1]

    torch._dynamo.reset()
    first = run(True, 0)
    eager: list[float] = []
    comp: list[float] = []
    for r in range(rounds):
        eager += run(False, r)[warmup:]
        comp += run(True, r)[warmup:]
    return [common.row(f"dip_step/{ARCH}/w{width}/{size}x{size}/eager_vs_compiled",
                       statistics.median(eager), statistics.median(comp), device,
                       compile_s=round(first[0] / 1e3, 2), steps=steps, rounds=rounds)]


def bench_cohort(size, width, k, steps, warmup, device, compile_both: bool, rounds: int = 3) -> dict:
    """K members one after another (sum of their per-step medians) vs together
    (median per group step), in ``rounds`` interleaved rounds (each round: the
    K solo runs, then the group run), pooling per-step times after ``warmup``."""
    obs = _problem(size, device)
    archs = builtin_genotypes()[:k]
    seeds = list(range(k))
    solo: list[list[float]] = [[] for _ in range(k)]
    group: list[float] = []
    for _ in range(rounds):
        for i, (a, s) in enumerate(zip(archs, seeds)):
            _, t = common.step_times(lambda cb: fit_dip(_net(a, width, device, s, 3), obs, DIPSettings(steps), seed=s,
                                                        quiet=True, compile=compile_both, callback=cb), device)
            solo[i] += t[warmup:]
        nets = [_net(a, width, device, s, 3) for a, s in zip(archs, seeds)]
        group += common.step_times(lambda cb: fit_dip_group(nets, obs, DIPSettings(steps), seeds=seeds, quiet=True,
                                                            compile=compile_both, callback=cb), device)[1][warmup:]
    return common.row(f"cohort/k{k}/w{width}/{size}x{size}/one_by_one_vs_together"
                      + ("/compiled" if compile_both else ""),
                      sum(statistics.median(t) for t in solo), statistics.median(group), device,
                      members=k, steps=steps, rounds=rounds)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--widths", default="32,64")
    p.add_argument("--cohort", type=int, default=4, help="cohort size K")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (eager/compiled pairs; solo runs then the group)")
    p.add_argument("--skip-compile", action="store_true", help="no compiled rows (compiling takes minutes on a CPU)")
    p.add_argument("--cohort-compile", action="store_true", help="compile both sides of the cohort rows")
    p.add_argument("--out", default=None)
    p.add_argument("--warm-cache", action="store_true",
                   help="use Inductor's usual cache directory (default: a fresh one, so compile_s is a cold compile)")
    args = p.parse_args(argv)
    if not args.warm_cache:
        # Inductor reads the variable when it compiles: a fresh cache makes the first
        # compile of each width cold (what a user's first run pays); later rounds hit it.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="isnas-bench-inductor-")
    device = common.pick_device(args.device)
    rows = []
    for w in common.ints(args.widths):
        step_rows = bench_step(args.size, w, args.steps, args.warmup, device, not args.skip_compile, args.rounds)
        rows += step_rows
        rows.append(bench_cohort(args.size, w, args.cohort, args.steps, args.warmup, device, args.cohort_compile,
                                 args.rounds))
        common.print_rows(rows[-len(step_rows) - 1:])
    out = common.write_rows(rows, args.out or common.default_out("dip", device))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
