"""Benchmark: spectral scoring, reference vs fused (DESIGN §4, §7 (a)).

    python bench/bench_spectral.py                       # tiny CPU smoke run
    python bench/bench_spectral.py --batch 256 --sizes 512 --channels 3   # GPU

Rows (one JSON file, see bench/_common.py):

* ``spectral/<metrics>/...``: float64 reference (``isnas_fast.spectral``) vs
  the dispatcher's choice (``isnas_fast.kernels.spectral_scores``: Triton on
  CUDA, the reference itself on a CPU -- then the ratio is ~1 by design);
* ``spectral-f32ref/<metrics>/...``: the float32 PyTorch reference
  (``kernels.spectral.spectral_scores_reference(dtype=float32)``) vs the same
  fast path.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

METRIC_SETS = {
    "strip": ["psd_db_strip_mse"],
    "mse": ["psd_db_strip_mse", "psd_db_mse", "nodc_psd_db_mse"],
    "all": [
        "psd_db_strip_mse", "psd_strip_hist_emd", "psd_db_mse",
        "nodc_psd_db_strip_mse", "nodc_psd_strip_hist_emd", "nodc_psd_db_mse",
    ],
}


def make_inputs(batch: int, channels: int, h: int, w: int, device: torch.device, seed: int = 0):
    """A noisy corrupted image and ``batch`` smooth random outputs in (0, 1), like random nets give."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    y = torch.rand(channels, h, w, generator=g, device=device)
    o = torch.rand(batch, channels, h, w, generator=g, device=device)
    o = F.avg_pool2d(F.pad(o, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    return y, torch.sigmoid(6 * (o - 0.5))


def run(args) -> list[dict]:
    from isnas_fast import kernels
    from isnas_fast.kernels import spectral_reference as ref
    from isnas_fast.kernels.spectral_reference import spectral_scores_reference

    device = common.pick_device(args.device)
    rows = []
    for size in common.ints(args.sizes):
        y, o = make_inputs(args.batch, args.channels, size, size, device)
        for set_name in common.words(args.metrics):
            metrics = METRIC_SETS[set_name]
            shape = f"B{args.batch}xC{args.channels}x{size}x{size}"
            backend = kernels.backend(device=device)
            fast = common.time_ms(lambda: kernels.spectral_scores(y, o, metrics), device, args.warmup, args.reps)
            ref64 = common.time_ms(lambda: ref.spectral_scores_reference(y, o, metrics), device, args.warmup, args.reps)
            ref32 = common.time_ms(
                lambda: spectral_scores_reference(y, o, metrics, dtype=torch.float32), device, args.warmup, args.reps
            )
            rows.append(common.row(f"spectral/{set_name}/{shape}", ref64, fast, device, backend=backend))
            rows.append(common.row(f"spectral-f32ref/{set_name}/{shape}", ref32, fast, device, backend=backend))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--sizes", default="64", help="comma-separated square sizes")
    p.add_argument("--metrics", default="strip,all", help=f"comma-separated of {', '.join(METRIC_SETS)}")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default=None, help="JSON file (default bench/results/spectral-<device>.json)")
    args = p.parse_args(argv)
    rows = run(args)
    common.print_rows(rows)
    out = common.write_rows(rows, args.out or common.default_out("spectral", common.pick_device(args.device)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
