"""Does averaging restarts close the gap to BM3D?

DIP's output depends on the network's random start: on a flat crop two
starts of the same network can differ by several dB.  Averaging the outputs
of K runs that differ only in their start cancels part of each run's own
error.  Per image of ``search_images.py`` (sigma 25, noise draw 0): NAS-DIP's
denoising architecture, width 16, the default early stop, restored with
starts (``seed``) 0..K-1 by ``isnas_fast.restore``; the PSNR of each run,
of the mean of the first two and of all K, and BM3D told sigma
(``pip install bm3d``; skipped without it).  One torch thread.  Writes
``bench/results/restarts-cpu.json`` and prints the means per image set.

    .venv/bin/python bench/search_images.py runs/si
    .venv/bin/python bench/restarts_study.py runs/si [--restarts 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import isnas_fast
from isnas_fast.io import load_image
from isnas_fast.quality import psnr
from isnas_fast.suite import references
from isnas_fast.tasks import Denoise


def one(path: Path, restarts: int, sigma: float = 25.0) -> dict:
    clean = load_image(path)
    noisy = Denoise(sigma).corrupt(clean, seed=0).y
    outs, secs = [], []
    for s in range(restarts):
        t = time.perf_counter()
        r = isnas_fast.restore(noisy, "denoise", sigma=sigma, arch="nasdip-denoise", width=16, seed=s, quiet=True)
        secs.append(time.perf_counter() - t)
        outs.append(r.tensor)

    def p(x: torch.Tensor) -> float:
        return float(psnr(x.clamp(0, 1), clean)[0])

    ref = references.bm3d(noisy, sigma) if references.available("bm3d") else None
    return {"image": path.stem, "runs": [p(o) for o in outs], "mean_of_2": p(torch.stack(outs[:2]).mean(0)),
            f"mean_of_{restarts}": p(torch.stack(outs).mean(0)), "bm3d": p(ref) if ref is not None else None,
            "seconds_per_run": statistics.median(secs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", help="the folder search_images.py wrote (tuning/ and held_out/)")
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "restarts-cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: dict = {"restarts": args.restarts, "sets": {}}
    for name in ("tuning", "held_out"):
        rows = []
        for path in sorted((Path(args.images) / name).glob("*.png")):
            rows.append(one(path, args.restarts))
            print(json.dumps(rows[-1]), flush=True)
        out["sets"][name] = rows
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        k = f"mean_of_{args.restarts}"
        single = statistics.mean(statistics.mean(r["runs"]) for r in rows)
        line = (f"{name}: one run {single:.2f} dB, mean of 2 {statistics.mean(r['mean_of_2'] for r in rows):.2f}, "
                f"mean of {args.restarts} {statistics.mean(r[k] for r in rows):.2f}")
        if all(r["bm3d"] is not None for r in rows):
            line += f", BM3D {statistics.mean(r['bm3d'] for r in rows):.2f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
