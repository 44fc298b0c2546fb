"""What an estimated noise level costs the restore: sigma estimated vs told the true sigma,
and a sigma given 40 % too low or too high.

The held-out 64 px crops of ``noise_estimation.py`` (scikit-image's sample
images and the paper's shipped images; ``pip install scikit-image``), each
corrupted at sigma in {5, 10, 15, 25, 35, 50, 75}, restored with
``isnas_fast.restore`` with the NAS-DIP denoising architecture (no search,
so that only the noise level differs), width 16, the default early stop, the
same seed: told the true sigma, told nothing (estimated), and, with
``--wrong``, told 0.6 and 1.4 times the true sigma.  PSNR against the clean
crop; writes bench/results/sigma-restore-cpu.json.

    .venv/bin/python bench/sigma_restore.py [--wrong] [--images N] [--sigmas 5,25]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from noise_estimation import HELD_OUT, SIGMAS, crop, noisy_copy  # noqa: E402

import isnas_fast  # noqa: E402
from isnas_fast.quality import psnr  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wrong", action="store_true", help="also sigma x 0.6 and x 1.4")
    ap.add_argument("--images", type=int, default=len(HELD_OUT))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sigmas", default=",".join(map(str, SIGMAS)))
    ap.add_argument("--redo", default="", help="labels whose rows are run again (e.g. auto, after the estimator changed)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "sigma-restore-cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sigmas = [int(s) for s in args.sigmas.split(",")]
    out_path = Path(args.out)
    done = json.loads(out_path.read_text())["rows"] if out_path.exists() else []
    redo = set(filter(None, args.redo.split(",")))
    done = [r for r in done if r["told"] not in redo]
    have = {(r["image"], r["sigma"], r["told"]) for r in done}
    rows = list(done)
    for name, t, l in HELD_OUT[: args.images]:
        clean = crop(name, t, l)
        for s in sigmas:
            noisy = noisy_copy(clean, s)
            told = {"true": float(s), "auto": None}
            if args.wrong:
                told.update({"x0.6": 0.6 * s, "x1.4": 1.4 * s})
            for label, value in told.items():
                if (name, s, label) in have:
                    continue
                t0 = time.perf_counter()
                r = isnas_fast.restore(noisy, "denoise", sigma=value, arch="nasdip-denoise", width=16,
                                       ground_truth=clean, seed=0, quiet=True)
                rows.append({"image": name, "sigma": s, "told": label, "sigma_used": r.task.params()["sigma"],
                             "psnr": round(r.psnr, 4), "noisy_psnr": round(float(psnr(noisy, clean)[0]), 4),
                             "stopped_at": r.dip.stopped_at, "seconds": round(time.perf_counter() - t0, 2)})
                print(json.dumps(rows[-1]), flush=True)
                out_path.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    summarise(rows)
    return 0


def summarise(rows: list[dict]) -> None:
    by = {(r["image"], r["sigma"], r["told"]): r for r in rows}
    for label in ("auto", "x0.6", "x1.4"):
        diffs = [(by[(i, s, label)]["psnr"] - r["psnr"], i, s) for (i, s, t), r in by.items()
                 if t == "true" and (i, s, label) in by]
        if not diffs:
            continue
        d = np.array([x[0] for x in diffs])
        worst = min(diffs)
        print(f"{label:5s} - true: {len(d)} runs, mean {d.mean():+.3f} dB, within 0.3 dB {np.mean(np.abs(d) <= 0.3):.0%}, "
              f"worst {worst[0]:+.2f} dB ({worst[1]}, sigma {worst[2]})")
        for s in sorted({x[2] for x in diffs}):
            ds = np.array([x[0] for x in diffs if x[2] == s])
            print(f"   sigma {s:3d}: mean {ds.mean():+.3f}, worst {ds.min():+.2f}")
    # how far the restore moves against how far the estimate is off
    pairs = [(abs(r["sigma_used"] - s) / s * 100, r["psnr"] - by[(i, s, "true")]["psnr"])
             for (i, s, t), r in by.items() if t == "auto" and (i, s, "true") in by]
    for lo, hi in ((0, 2), (2, 5), (5, 10), (10, 100)):
        d = np.array([x for e, x in pairs if lo <= e < hi])
        if len(d):
            print(f"estimate off by {lo}-{hi} %: {len(d)} runs, within 0.3 dB {np.mean(np.abs(d) <= 0.3):.0%}, "
                  f"mean {d.mean():+.2f} dB, worst {d.min():+.2f} dB")


if __name__ == "__main__":
    sys.exit(main())
