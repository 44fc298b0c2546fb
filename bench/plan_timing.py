"""How close is the plan's time per step to a real step, by size and upsampling cell?

``isnas_fast.resources`` estimates a run's seconds per step from counts (saved
bytes, FLOPs) before it starts.  Here each network is trained for a few real
steps (``fit_dip``, eager, all cores, the final run's width and a 32-channel
input code) on a centre crop of matplotlib's Grace Hopper (sigma 25), and the
median step after the warm-up is set beside the estimate for the same network
and size.  The networks: NAS-DIP's denoising genotype, and the skips of a
searched pick (``71,0100001111001111111000000``) under three upsampling cells
(bicubic, bilinear and nearest, each followed by a 5x5 convolution).

    .venv/bin/python bench/plan_timing.py --side 256 512 --out results/plan-timing-cpu.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import median_of_steps, step_times  # noqa: E402
from size_study import clean_crop  # noqa: E402

from isnas_fast.dip import DIPSettings, fit_dip  # noqa: E402
from isnas_fast.genotype import Genotype, decode_upsample, valid_upsample_indices  # noqa: E402
from isnas_fast.network import build_network  # noqa: E402
from isnas_fast.resources import estimate_run, profile_network  # noqa: E402
from isnas_fast.tasks import Denoise  # noqa: E402

SKIPS = "0100001111001111111000000"
CELLS = ("bicubic -> conv 5x5, leaky_relu", "bilinear -> conv 5x5, leaky_relu", "nearest -> conv 5x5, leaky_relu")


def architectures() -> list[str]:
    """NAS-DIP's genotype name and the pick's skips under each of :data:`CELLS`."""
    index = {decode_upsample(u).describe(): u for u in valid_upsample_indices()}
    return ["nasdip-denoise"] + [f"{index[c]},{SKIPS}" for c in CELLS]


def time_steps(arch: str, side: int, width: int, in_channels: int, steps: int, warmup: int = 3) -> dict:
    """Median seconds of a real step after ``warmup``, beside the plan's estimate."""
    clean = clean_crop("mpl:grace_hopper.jpg", side)
    assert clean is not None
    obs = Denoise(25.0).corrupt(clean, seed=0)
    a = arch if arch == "nasdip-denoise" else Genotype.parse(arch)
    net = build_network(a, in_channels, 3, width)
    _, ms = step_times(lambda cb: fit_dip(net, obs, DIPSettings(steps + warmup), seed=0, quiet=True, callback=cb),
                       torch.device("cpu"))
    measured = median_of_steps([ms], warmup) / 1e3
    est = estimate_run(profile_network(a, width, in_channels, 3), [side * side], "cpu", channels=3, iterations=2400)
    return {"arch": arch, "cell": a.describe() if isinstance(a, Genotype) else arch, "side": side, "width": width,
            "in_channels": in_channels, "steps": steps, "threads": torch.get_num_threads(),
            "seconds_per_step": round(measured, 4), "estimate": round(float(est.seconds_per_step), 4),
            "measured_over_estimate": round(measured / float(est.seconds_per_step), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--in-channels", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6, help="timed steps (after 3 warm-up steps)")
    ap.add_argument("--out", default=None, help="write the rows here (JSON)")
    args = ap.parse_args()
    rows = []
    for side in args.side:
        for arch in architectures():
            rows.append(time_steps(arch, side, args.width, args.in_channels, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
