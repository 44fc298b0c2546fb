"""The image ``restore`` returns (the run's averaged network) against the raw-output average it replaces.

A DIP estimate averages the raw outputs over steps (the early stop's window,
or an EMA); no single network computes that average, so the run returns the
image of an :class:`~isnas_fast.dip.averaging.AveragedNetwork` instead --
the window cut into blocks of consecutive steps, each block's mean weights
on one of its noisy inputs -- which bundles and exports reproduce.  Each run
below gives both numbers: ``psnr_returned`` (that network's image) and
``psnr_output_average`` (the raw-output average over the same steps; the
training does not depend on how the result is averaged, so both come from
one trajectory).  ``served_max_abs_diff_trained_run`` compares the run's
output (``TrainedRun.output()``, what a bundle reproduces) with the returned
image; ``served_psnr_onnx``, for the first run of each image, the ONNX model
on ONNX Runtime.

Crops: 64 x 64 at the centre of ten of scikit-image's bundled images (not
used by any other measurement here), sigma 25 denoising (the package's
task corruption, seed 0), the quick preset with its default early stop,
fixed architectures, with the default blocks per window
(``isnas_fast.dip.averaging.BLOCKS`` = 16); also 1 and 8 blocks for the
first architecture.  One torch thread: under load, two threads per process
made the same DIP step 20-40 times slower from one run to the next.

    flock /tmp/isnas-cpu.lock python bench/served_vs_restored.py [--out bench/results/served-vs-restored-cpu.json]

Needs scikit-image (``pip install scikit-image``; the bench only).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from isnas_fast import restore
from isnas_fast.dip import averaging
from isnas_fast.quality import psnr
from isnas_fast.tasks import Denoise

IMAGES = ("camera", "coins", "hubble_deep_field", "rocket", "astronaut", "immunohistochemistry", "brick",
          "grass", "retina", "text")
ARCHS = ("nasdip-denoise", "64,0001010110110101110010111", "172,0000011001001001100111101")
BLOCK_VARIANTS = (16, 1, 8)


def crop(name: str, side: int = 64) -> torch.Tensor:
    """The centre ``side`` x ``side`` crop of ``skimage.data.<name>()``, (1, C, H, W) float32 in [0, 1]."""
    from skimage import data

    a = np.asarray(getattr(data, name)())
    top, left = (a.shape[0] - side) // 2, (a.shape[1] - side) // 2
    a = np.ascontiguousarray(a[top:top + side, left:left + side, ..., :3] if a.ndim == 3
                             else a[top:top + side, left:left + side])
    t = torch.from_numpy(a).float().div(255.0)
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None].contiguous()


def served_onnx(result, folder: Path) -> float:
    """PSNR (dB) of the ONNX model's image on ONNX Runtime (CPU) against the returned image."""
    from isnas_fast.export.onnx_export import to_onnx
    from isnas_fast.export.serve import run_onnx

    path = to_onnx(result, folder / "model.onnx")
    image, _ = run_onnx(path, provider="cpu")
    return float(psnr(torch.from_numpy(image).clamp(0, 1), result.tensor)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "served-vs-restored-cpu.json"))
    ap.add_argument("--images", nargs="*", default=list(IMAGES))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.images:
            clean = crop(name)
            noisy = Denoise(25).corrupt(clean, seed=0).y
            for ai, arch in enumerate(ARCHS):
                for blocks in BLOCK_VARIANTS if ai == 0 else BLOCK_VARIANTS[:1]:
                    averaging.BLOCKS = blocks
                    t = time.perf_counter()
                    r = restore(noisy, "denoise", arch=arch, ground_truth=clean, quiet=True, device="cpu", sigma=25)
                    seconds = time.perf_counter() - t
                    d = r.run.dip
                    returned = float(psnr(r.tensor, clean)[0])
                    average = float(psnr(d.output_average.float().cpu(), clean)[0])
                    row = {
                        "image": name, "arch": arch, "blocks": blocks, "channels": int(clean.shape[1]),
                        "iterations_run": d.iterations_run, "stopped_at": d.stopped_at,
                        "members": len(r.run.network.members),
                        "psnr_returned": round(returned, 4), "psnr_output_average": round(average, 4),
                        "difference_db": round(returned - average, 4),
                        "served_max_abs_diff_trained_run": float((r.run.output().clamp(0, 1) - r.tensor).abs().max()),
                        "seconds": round(seconds, 2),
                    }
                    if ai == 0 and blocks == BLOCK_VARIANTS[0]:
                        row["served_psnr_onnx"] = round(served_onnx(r, Path(tmp)), 2)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    averaging.BLOCKS = BLOCK_VARIANTS[0]
    summary = {}
    for blocks in BLOCK_VARIANTS:
        sel = [r for r in rows if r["blocks"] == blocks]
        diffs = [r["difference_db"] for r in sel]
        summary[f"blocks={blocks}"] = {
            "runs": len(sel), "mean_difference_db": round(statistics.mean(diffs), 4),
            "worst_difference_db": round(min(diffs), 4), "best_difference_db": round(max(diffs), 4),
            "archs": sorted({r["arch"] for r in sel}),
        }
    default = [r for r in rows if r["blocks"] == BLOCK_VARIANTS[0]]
    onnx_psnr = [r["served_psnr_onnx"] for r in default if "served_psnr_onnx" in r]
    report = {
        "what": "PSNR (dB) vs the clean crop of the image restore returns (the averaged network's) and of the "
                "raw-output average over the same steps, one run each; sigma 25, quick preset, default early stop",
        "device": "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "summary": summary, "min_served_psnr_onnx": min(onnx_psnr) if onnx_psnr else None,
        "max_served_abs_diff_trained_run": max(r["served_max_abs_diff_trained_run"] for r in default),
        "seconds": round(time.perf_counter() - t_all, 1), "rows": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
