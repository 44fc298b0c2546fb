"""Benchmark: x2 upsample + conv of an upsampling cell, reference vs fused (DESIGN §3.2, §7 (b)).

    python bench/bench_upsample_conv.py                  # tiny CPU smoke run
    python bench/bench_upsample_conv.py --channels 128 --sizes 256 --ks 3,5 --dtypes float32,bfloat16  # GPU

Rows: ``upsample_conv/<mode>/k<k>/<act>/<dtype>/N..xC..xHxW`` with
reference = ``F.interpolate`` + ``F.conv2d`` (+ activations,
``upsample_conv_reference``) and fast = ``isnas_fast.kernels.upsample_conv``
(the dispatcher's choice: Triton on CUDA, the reference on a CPU), forward
only, under ``no_grad``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_inputs(batch: int, c_in: int, c_out: int, size: int, k: int, dtype, device: torch.device, seed: int = 0):
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    x = torch.randn(batch, c_in, size, size, generator=g, device=device)
    w = torch.randn(c_out, c_in, k, k, generator=g, device=device) / (c_in * k * k) ** 0.5
    return x.to(dtype), w.to(dtype)


def run(args) -> list[dict]:
    from isnas_fast import kernels
    from isnas_fast.kernels.fused_upsample_conv import upsample_conv_reference

    device = common.pick_device(args.device)
    rows = []
    for size in common.ints(args.sizes):
        for k in common.ints(args.ks):
            for mode in common.words(args.modes):
                for dname in common.words(args.dtypes):
                    x, w = make_inputs(args.batch, args.channels, args.channels, size, k, DTYPES[dname], device)
                    act = args.act
                    with torch.no_grad():
                        fast = common.time_ms(lambda: kernels.upsample_conv(x, w, mode, act), device, args.warmup, args.reps)
                        refm = common.time_ms(lambda: upsample_conv_reference(x, w, mode, act), device, args.warmup, args.reps)
                    name = f"upsample_conv/{mode}/k{k}/{act}/{dname}/N{args.batch}xC{args.channels}x{size}x{size}"
                    rows.append(common.row(name, refm, fast, device, backend=kernels.backend(device=device)))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--sizes", default="32", help="comma-separated input sizes (output is 2x)")
    p.add_argument("--ks", default="3", help="comma-separated kernel sizes")
    p.add_argument("--modes", default="bilinear,nearest")
    p.add_argument("--dtypes", default="float32", help=f"comma-separated of {', '.join(DTYPES)}")
    p.add_argument("--act", default="leaky_relu")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default=None, help="JSON file (default bench/results/upsample_conv-<device>.json)")
    args = p.parse_args(argv)
    rows = run(args)
    common.print_rows(rows)
    out = common.write_rows(rows, args.out or common.default_out("upsample_conv", common.pick_device(args.device)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
