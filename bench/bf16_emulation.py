"""CPU emulation of bf16 autocast in the DIP loop: where does bf16's PSNR cost come from?

On an H200, compiled bf16 runs of the 1200-step 512x512 denoising DIP ended
0.00, 0.28 and 0.30 dB below fp32 over three seeds
(``results/gpu_check-nvidia-h200-precision.json``).  A CPU has no fast bf16,
so this emulates its rounding in float32: every leaf module's output is
rounded to bf16 in the forward pass and so is the gradient flowing back
through it, and convolutions take bf16-rounded inputs, weights and biases
(products of bf16 values are exact in float32, as on tensor cores with
float32 accumulation).  The problem is a small analogue of the GPU one: the
bundled 128x128 sample, 4x down- and upscaled (as smooth per pixel as the
512x512 upscale), sigma 25, NAS-DIP denoise genotype, width 32.

    python bench/bf16_emulation.py                 # 3 seeds x fp32, bf16: ~25 min on 2 cores
    python bench/bf16_emulation.py --steps 300 --seeds 0

Writes ``results/bf16-emulation-cpu.json``: per run the PSNR of the smoothed
output after 300, 600, 900 and 1200 steps (ground truth only measures), and
per seed bf16 minus fp32 at those steps.

Measured (``results/bf16-emulation-cpu.json``): bf16 minus fp32 was -0.81,
-0.40, -0.33 dB after 300 steps and +0.31, +0.10, +0.08 dB after 600 (about
the PSNR peak here; by 1200 steps both overfit the noise).  Emulated bf16
rounding fits more slowly at first and then catches up: at a fixed step count
still on the rising part of the curve, as the 512x512 GPU runs may be at 1200
steps, that shows as a loss.  A small analogue, not the GPU run itself.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import types
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402


class _RoundBF16(torch.autograd.Function):
    """Identity up to bf16 rounding, forward (values) and backward (gradients)."""

    @staticmethod
    def forward(ctx, x):
        return x.to(torch.bfloat16).float()

    @staticmethod
    def backward(ctx, g):
        return g.to(torch.bfloat16).float()


def _conv_forward(self, x):
    b = _RoundBF16.apply(self.bias) if self.bias is not None else None
    return self._conv_forward(_RoundBF16.apply(x), _RoundBF16.apply(self.weight), b)


def emulate_bf16(net: nn.Module) -> nn.Module:
    """Round every leaf module's output (and its gradient) to bf16; convolutions on bf16 operands."""
    for m in net.modules():
        if len(list(m.children())):
            continue
        if isinstance(m, nn.Conv2d):
            m.forward = types.MethodType(_conv_forward, m)
        m.register_forward_hook(lambda mod, inp, out: _RoundBF16.apply(out) if isinstance(out, torch.Tensor) else out)
    return net


def problem(size: int = 128, factor: int = 4):
    from isnas_fast.imageio import load_image
    from isnas_fast.tasks import Denoise

    with resources.as_file(resources.files("isnas_fast").joinpath("data/sample.png")) as p:
        clean = load_image(p)
    small = F.interpolate(clean, size=(size // factor,) * 2, mode="area")
    clean = F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return clean, Denoise(25).corrupt(clean, seed=0)


def run(mode: str, seed: int, steps: int, width: int, clean, obs) -> dict:
    from isnas_fast.device import seeded
    from isnas_fast.dip import DIPSettings, fit_dip
    from isnas_fast.network import build_network
    from isnas_fast.quality import psnr

    with seeded(seed, torch.device("cpu")):
        net = build_network("nasdip-denoise", 32, 3, width)
    if mode == "bf16":
        emulate_bf16(net)
    t = time.perf_counter()
    res = fit_dip(net, obs, DIPSettings(steps), seed=seed, compile=False, quiet=True, ground_truth=clean)
    curve = res.psnr_curve
    return {"mode": mode, "seed": seed, "steps": steps, "width": width, "psnr": float(psnr(res.output, clean)[0]),
            "psnr_at": {i: curve[i - 1] for i in (300, 600, 900, 1200) if i <= len(curve)},
            "seconds": time.perf_counter() - t}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bf16-emulation-cpu.json"))
    args = p.parse_args(argv)
    clean, obs = problem()
    runs = []
    for seed in common.ints(args.seeds):
        for mode in ("fp32", "bf16"):
            runs.append(run(mode, seed, args.steps, args.width, clean, obs))
            print(json.dumps(runs[-1]), flush=True)
    diff = {}
    for seed in common.ints(args.seeds):
        pair = {r["mode"]: r["psnr_at"] for r in runs if r["seed"] == seed}
        diff[str(seed)] = {str(k): pair["bf16"][k] - pair["fp32"][k] for k in pair["fp32"]}
    out = {"device": common.device_label(torch.device("cpu")), "what": __doc__.splitlines()[0], "runs": runs,
           "bf16_minus_fp32_db_at_step": diff}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
