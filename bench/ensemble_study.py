"""The cohort ensemble (``ensemble=K``) against the single pick, PSNR and time.

For each clean crop (denoising, sigma 25, seed 0) the quick preset's search
runs once (its picks do not depend on K); then the pick alone, the best two
and the best three cohort members (by selection score) are each trained at
full size together, as ``restore(..., ensemble=K)`` trains them, with the
preset's early stopping and the task's step count.  Reported per image and
K: the PSNR of the returned image (the selection-weighted average for K > 1)
and the final stage's seconds.

    python bench/ensemble_study.py CROP.png [...] [--width 16] [--results FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from isnas_fast.io import load_image
from isnas_fast.quality import psnr
from isnas_fast.search import ensemble_average, preset, search_picks, train_finals
from isnas_fast.tasks import Denoise

KS = (1, 2, 3)


def study_image(path: Path, width: int) -> dict:
    clean = load_image(path)
    obs = Denoise(25).corrupt(clean, seed=0)
    settings = preset("quick", width=width, ensemble=max(KS))
    t = time.perf_counter()
    search = search_picks(obs, settings, seed=0, quiet=True)
    search_s = time.perf_counter() - t
    ranked = sorted(search.cohort, key=lambda m: -m.selection_psnr)
    assert ranked[0].genotype == search.genotype, "the best selection score is the pick"
    row = {"search_s": search_s, "members": [str(m.genotype) for m in ranked[: max(KS)]]}
    for k in KS:
        members = ranked[:k]
        t = time.perf_counter()
        runs = train_finals([m.genotype for m in members], obs, settings, seed=0, ground_truth=clean, quiet=True)
        seconds = time.perf_counter() - t
        out = runs[0].dip.output.float() if k == 1 else ensemble_average(members, runs)[0]
        row[f"K{k}"] = {"psnr": float(psnr(out.clamp(0, 1), clean)[0]), "final_s": seconds,
                        "member_psnr": [float(psnr(r.dip.output.float().clamp(0, 1), clean)[0]) for r in runs],
                        "iterations_run": [r.dip.iterations_run for r in runs]}
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results" / "ensemble-cpu.json")
    args = p.parse_args(argv)
    rows = {}
    for path in args.images:
        rows[path.stem] = study_image(path, args.width)
        r = rows[path.stem]
        print(path.stem, "  ".join(f"K{k} {r[f'K{k}']['psnr']:.2f} dB {r[f'K{k}']['final_s']:.0f} s" for k in KS),
              flush=True)
    summary = {}
    for k in KS[1:]:
        gains = [r[f"K{k}"]["psnr"] - r["K1"]["psnr"] for r in rows.values()]
        cost = [r[f"K{k}"]["final_s"] / r["K1"]["final_s"] for r in rows.values()]
        summary[f"K{k}"] = {"gain_mean_db": statistics.mean(gains), "gain_min_db": min(gains),
                            "gain_max_db": max(gains), "final_time_ratio_median": statistics.median(cost)}
        print(f"K{k}: {summary[f'K{k}']}")
    args.results.write_text(json.dumps({"what": __doc__.splitlines()[0], "width": args.width, "preset": "quick",
                                        "task": "denoise sigma 25", "summary": summary, "rows": rows},
                                       indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
