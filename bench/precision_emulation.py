"""CPU emulation of TF32 and bf16 in the DIP loop: what do they cost in PSNR?

On an H200, compiled bf16 runs of the 1200-step 512x512 denoising DIP ended
0.00, 0.28 and 0.30 dB below "fp32" over three seeds
(``results/gpu_check-nvidia-h200-precision.json``), and that "fp32" itself
ran its convolutions in TF32 (cuDNN's default).  A CPU has neither, so this
emulates their rounding in float32, on a small analogue of the GPU problem:
the bundled 128x128 sample, 4x down- and upscaled (as smooth per pixel as the
512x512 upscale), sigma 25, NAS-DIP denoise genotype, width 32.  Modes:

- ``fp32``: plain float32 (the reference; deterministic on the CPU).
- ``fp32_ulp``: float32, with every pixel of the noisy observation moved one
  ulp up or down at random.  DIP is chaotic: this shows how far PSNR moves
  for the smallest possible perturbation, the floor under any precision's
  difference.
- ``tf32``: every convolution (forward, and both backward convolutions) on
  operands rounded to TF32 (10 mantissa bits, round to nearest even), with
  float32 accumulation and float32 outputs, as tensor cores do.
- ``tf32_trunc``: the same with the low 13 bits truncated instead (what an
  MMA does with float32 registers not converted first): the worse case.
- ``bf16``: autocast-like: every leaf module's output and the gradient
  flowing back through it rounded to bf16, convolutions on bf16 operands.

    python bench/precision_emulation.py            # 3 seeds x 5 modes: about an hour on 2 cores
    python bench/precision_emulation.py --steps 300 --seeds 0 --modes fp32,tf32
    python bench/precision_emulation.py --study    # 16 seeds x 5 modes at 64x64: about 30 min

One run per seed says little: DIP is chaotic, and at 128x128 the one-ulp
nudge alone moved seed 0's best PSNR by +0.27 dB.  ``--study`` therefore
runs many seeds on a smaller problem (64x64 from 16x16, width 16, 600
steps, the best PSNR near step 400), the seeds of a mode trained together
(:func:`isnas_fast.dip.fit_dip_group`: each follows its solo trajectory),
and reports per mode the mean difference from fp32 over the seeds with its
standard error and 95% interval, for the best PSNR along the run and for
ES-WMV's output; written to ``results/precision-emulation-seeds-cpu.json``.

Measured (``--study``, 16 seeds; mean +- standard error, best PSNR / ES-WMV):
one-ulp nudge -0.09 +- 0.05 / -0.08 +- 0.07 dB (single seeds up to 0.44 /
0.53 dB apart); TF32 -0.07 +- 0.09 / -0.11 +- 0.07; truncated TF32 +0.01 +-
0.08 / -0.02 +- 0.07; bf16 -0.06 +- 0.10 / -0.06 +- 0.10.  No mode differs
from the one-ulp floor; single runs cannot show a 0.1 dB difference.

Writes ``results/precision-emulation-cpu.json``: per run the PSNR of the
smoothed output after 300, 600, 900 and 1200 steps, the best PSNR along the
run, and the PSNR where ES-WMV stops (ground truth only measures), and per
mode and seed their differences from fp32 (keys "300" ... "1200", "peak",
"es").
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import types
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

MODES = ("fp32", "fp32_ulp", "tf32", "tf32_trunc", "bf16")


def round_mantissa(x: Tensor, bits: int, truncate: bool = False) -> Tensor:
    """float32 ``x`` rounded to ``bits`` explicit mantissa bits (float32 exponent range).

    Round to nearest, ties to even (``bits=7`` is exactly ``x.to(bfloat16)``
    for finite values in bf16's range), or toward zero with ``truncate``.
    """
    drop = 23 - bits
    i = x.contiguous().view(torch.int32)
    if not truncate:
        i = i + ((1 << (drop - 1)) - 1) + ((i >> drop) & 1)
    return (i & -(1 << drop)).view(torch.float32)


class _RoundForward(torch.autograd.Function):
    """Rounds values; passes gradients through (an operand's rounding)."""

    @staticmethod
    def forward(ctx, x, bits, truncate):
        return round_mantissa(x, bits, truncate)

    @staticmethod
    def backward(ctx, g):
        return g, None, None


class _RoundBackward(torch.autograd.Function):
    """Passes values through; rounds the gradient (the backward convolutions' operand)."""

    @staticmethod
    def forward(ctx, x, bits, truncate):
        ctx.bits, ctx.truncate = bits, truncate
        return x.clone()  # a new tensor: the networks' in-place activations may overwrite it

    @staticmethod
    def backward(ctx, g):
        return round_mantissa(g, ctx.bits, ctx.truncate), None, None


class _RoundBF16(torch.autograd.Function):
    """Identity up to bf16 rounding, forward (values) and backward (gradients)."""

    @staticmethod
    def forward(ctx, x):
        return x.to(torch.bfloat16).float()

    @staticmethod
    def backward(ctx, g):
        return g.to(torch.bfloat16).float()


def _tf32_conv_forward(self, x, truncate=False):
    # The convolution saves the rounded x and weight, so its backward
    # convolutions see rounded operands too; the incoming gradient is rounded
    # by _RoundBackward.  Sums stay float32, and so do the bias and its
    # gradient (a plain sum of the float32 gradient).
    w = _RoundForward.apply(self.weight, 10, truncate)
    y = _RoundBackward.apply(self._conv_forward(_RoundForward.apply(x, 10, truncate), w, None), 10, truncate)
    return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def emulate_tf32(net: nn.Module, truncate: bool = False) -> nn.Module:
    """Every ``nn.Conv2d`` of ``net`` computes as a TF32 tensor-core convolution would."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.forward = types.MethodType(lambda self, x, t=truncate: _tf32_conv_forward(self, x, t), m)
    return net


def _bf16_conv_forward(self, x):
    b = _RoundBF16.apply(self.bias) if self.bias is not None else None
    return self._conv_forward(_RoundBF16.apply(x), _RoundBF16.apply(self.weight), b)


def emulate_bf16(net: nn.Module) -> nn.Module:
    """Round every leaf module's output (and its gradient) to bf16; convolutions on bf16 operands."""
    for m in net.modules():
        if len(list(m.children())):
            continue
        if isinstance(m, nn.Conv2d):
            m.forward = types.MethodType(_bf16_conv_forward, m)
        m.register_forward_hook(lambda mod, inp, out: _RoundBF16.apply(out) if isinstance(out, torch.Tensor) else out)
    return net


def ulp_nudge(x: Tensor, seed: int) -> Tensor:
    """``x`` in [0, 1] with every element moved one float32 ulp up or down (a seeded coin per element; kept in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    up = torch.rand(x.shape, generator=g) < 0.5
    return torch.nextafter(x, torch.where(up, torch.tensor(2.0), torch.tensor(-1.0))).clamp(0, 1)


def problem(size: int = 128, factor: int = 4) -> tuple[Tensor, Tensor]:
    """(clean, noisy): the bundled sample at ``size``, ``factor``x down- and upscaled; sigma 25 noise (seed 0)."""
    from isnas_fast.io import load_image
    from isnas_fast.tasks import Denoise

    with resources.as_file(resources.files("isnas_fast").joinpath("data/sample.png")) as p:
        clean = load_image(p)
    small = F.interpolate(clean, size=(size // factor,) * 2, mode="area")
    clean = F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return clean, Denoise(25).corrupt(clean, seed=0)


def run(mode: str, seed: int, steps: int, width: int, clean: Tensor, obs: Tensor,
        checkpoints: tuple[int, ...] = (300, 600, 900, 1200)) -> dict:
    """One CPU DIP run in ``mode``, with ES-WMV watching (default window and
    patience; it only observes, the trajectory is the same).  PSNRs in dB:
    ``psnr_at`` of the smoothed (EMA) output at ``checkpoints``, ``peak``
    the best along the run (and its step ``peak_at``), ``es`` of the window
    mean ES-WMV returns (detected at step ``es_at``), ``psnr`` of the
    returned output."""
    from isnas_fast.device import seeded
    from isnas_fast.dip import DIPSettings, EarlyStopping, fit_dip
    from isnas_fast.network import build_network
    from isnas_fast.quality import psnr

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    with seeded(seed, torch.device("cpu")):
        net = build_network("nasdip-denoise", 32, 3, width)
    _prepare(net, mode)
    if mode == "fp32_ulp":
        obs = dataclasses.replace(obs, y=ulp_nudge(obs.y, seed))
    t = time.perf_counter()
    res = fit_dip(net, obs, DIPSettings(steps), seed=seed, compile=False, quiet=True, ground_truth=clean,
                  early_stopping=EarlyStopping())
    curve = res.psnr_curve
    peak, peak_at = _peak(curve)
    return {"mode": mode, "seed": seed, "steps": steps, "width": width, "psnr": float(psnr(res.output, clean)[0]),
            "psnr_at": {i: curve[i - 1] for i in checkpoints if i <= len(curve)},
            "peak": peak, "peak_at": peak_at, "es": res.psnr_at_stop, "es_at": res.stopped_at,
            "seconds": time.perf_counter() - t}


def _peak(curve: list[float]) -> tuple[float, int]:
    """(best PSNR of a per-step curve, its 1-based step)."""
    i = max(range(len(curve)), key=curve.__getitem__)
    return curve[i], i + 1


# two-sided 95% Student t quantiles by degrees of freedom (between the listed
# ones, the next lower: slightly wide)
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
        11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11, 18: 2.10, 19: 2.09,
        20: 2.09, 25: 2.06, 30: 2.04}


def _prepare(net: nn.Module, mode: str) -> nn.Module:
    if mode == "bf16":
        return emulate_bf16(net)
    if mode.startswith("tf32"):
        return emulate_tf32(net, truncate=mode == "tf32_trunc")
    return net


def study(modes: list[str], seeds: list[int], size: int = 64, factor: int = 4, width: int = 16,
          steps: int = 600, progress: bool = True) -> dict:
    """Many seeds per mode, trained together; per mode and seed the best
    PSNR along the run (``peak``) and ES-WMV's (``es``), in dB, and per mode
    the statistics of their differences from fp32 over the seeds."""
    import statistics

    from isnas_fast.device import seeded
    from isnas_fast.dip import DIPSettings, EarlyStopping, fit_dip_group
    from isnas_fast.network import build_network

    clean, obs = problem(size, factor)
    per_mode: dict[str, dict[str, list[float]]] = {}
    seconds = {}
    for mode in modes:
        nets = []
        for s in seeds:
            with seeded(s, torch.device("cpu")):
                nets.append(_prepare(build_network("nasdip-denoise", 32, 3, width), mode))
        o = dataclasses.replace(obs, y=ulp_nudge(obs.y, 12345)) if mode == "fp32_ulp" else obs
        t = time.perf_counter()
        res = fit_dip_group(nets, o, DIPSettings(steps), seeds=seeds, compile=False, quiet=not progress,
                            desc=mode, ground_truth=clean, early_stopping=EarlyStopping())
        seconds[mode] = time.perf_counter() - t
        peaks = [_peak(r.psnr_curve) for r in res]
        per_mode[mode] = {"peak": [p for p, _ in peaks], "es": [r.psnr_at_stop for r in res],
                          "peak_at": [i for _, i in peaks], "es_at": [r.stopped_at for r in res]}
        print(json.dumps({"mode": mode, **per_mode[mode], "seconds": seconds[mode]}), flush=True)
    summary: dict[str, dict] = {}
    for mode in modes:
        if mode == "fp32":
            continue
        summary[mode] = {}
        for key in ("peak", "es"):
            d = [a - b for a, b in zip(per_mode[mode][key], per_mode["fp32"][key]) if a is not None and b is not None]
            if not d:
                continue
            n = len(d)
            mean = statistics.fmean(d)
            sd = statistics.stdev(d) if n > 1 else float("nan")
            se = sd / n ** 0.5
            q = _T95[max(k for k in _T95 if k <= max(n - 1, 1))]
            summary[mode][key] = {"mean_db": mean, "sd_db": sd, "se_db": se, "ci95_db": [mean - q * se, mean + q * se],
                                  "max_abs_db": max(abs(x) for x in d), "differences_db": d}
    return {"size": size, "factor": factor, "width": width, "steps": steps, "seeds": seeds, "runs": per_mode,
            "seconds": seconds, "minus_fp32": summary}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="DIP steps (default 1200; 600 with --study)")
    p.add_argument("--width", type=int, default=None, help="network width (default 32; 16 with --study)")
    p.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; 0 to 15 with --study)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated, from " + ", ".join(MODES))
    p.add_argument("--study", action="store_true", help="many seeds (default 0-15) on the 64x64 problem, trained together")
    p.add_argument("--out", default=None, help="default: results/precision-emulation[-seeds]-cpu.json")
    args = p.parse_args(argv)
    modes = common.words(args.modes)
    if "fp32" not in modes:
        modes.insert(0, "fp32")
    results = Path(__file__).resolve().parent / "results"
    command = "python bench/precision_emulation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.study:
        seeds = common.ints(args.seeds) if args.seeds else list(range(16))
        steps, width = args.steps or 600, args.width or 16
        out = {"device": common.device_label(torch.device("cpu")), "what": __doc__.splitlines()[0],
               "command": command, **study(modes, seeds, width=width, steps=steps)}
        path = Path(args.out or results / "precision-emulation-seeds-cpu.json")
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path}")
        return 0
    clean, obs = problem()
    runs = []
    seeds = common.ints(args.seeds or "0,1,2")
    for seed in seeds:
        for mode in modes:
            runs.append(run(mode, seed, args.steps or 1200, args.width or 32, clean, obs))
            print(json.dumps(runs[-1]), flush=True)
    diff: dict[str, dict[str, dict[str, float]]] = {}
    for mode in modes[1:]:
        for seed in seeds:
            at = {r["mode"]: {**{str(k): v for k, v in r["psnr_at"].items()}, "peak": r["peak"], "es": r["es"]}
                  for r in runs if r["seed"] == seed}
            diff.setdefault(mode, {})[str(seed)] = {k: at[mode][k] - at["fp32"][k] for k in at["fp32"]
                                                    if at[mode].get(k) is not None and at["fp32"][k] is not None}
    out = {"device": common.device_label(torch.device("cpu")), "what": __doc__.splitlines()[0],
           "command": command, "runs": runs, "minus_fp32_db_at_step": diff}
    path = Path(args.out or results / "precision-emulation-cpu.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
