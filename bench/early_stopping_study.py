"""Early stopping measured over many DIP runs: the returned-vs-best gap of each detector.

For every image (a clean crop; the noisy input is made here, sigma 25, seed 0)
an ``isnas-fast study`` is run: every genotype of the list trains for the
task's steps while each detector below only watches, and each run records
what each detector would have returned.  The gaps of all runs of all images
are pooled per detector: the share within 0.5 dB of the best PSNR the run
passed through, the worst gap, the mean.

    python bench/early_stopping_study.py CROP.png [CROP.png ...] --out DIR [--genotypes 8]

Writes ``DIR/<image>/`` (each study's files) and ``--results`` (default
``bench/results/early-stopping-cpu.json``).  A rerun resumes each study.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from isnas_fast.dip import EarlyStopping as E
from isnas_fast.io import load_image
from isnas_fast.study import run_study
from isnas_fast.study.analysis import early_stopping_summary
from isnas_fast.tasks import Denoise

DETECTORS = (
    E(100, 1000), E(100, 300), E(100, 200), E(50, 200),
    E(100, 1000, rise=0.1), E(100, 1000, rise=0.2), E(100, 1000, rise=0.3), E(50, 1000, rise=0.2),
    E(100, 300, "emv", 0.1), E(100, 1000, "emv", 0.1, rise=0.2),
    E(100, 100, "shift"),
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--genotypes", type=int, default=8, help="genotypes of the 522 list per image (seeded sample)")
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results" / "early-stopping-cpu.json")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    studies = {}
    for path in args.images:
        clean = load_image(path)
        noisy = Denoise(args.sigma).corrupt(clean, seed=0).y
        t = time.perf_counter()
        r = run_study(noisy, "denoise", ground_truth=clean, out=args.out / path.stem, models="builtin522",
                      num_candidates=args.genotypes, width=args.width, probes=DETECTORS, quiet=True)
        studies[path.stem] = r
        print(f"{path.stem}: {len(r.rows)} rows, {time.perf_counter() - t:.0f} s", flush=True)
    pooled = {}
    names = list(next(iter(studies.values())).analysis["early_stopping"])
    for name in names:
        returned, best = [], []
        for r in studies.values():
            for row in r.rows:
                if row.get("kind") == "genotype":
                    returned.append(row["probes"][name]["psnr"])
                    best.append(row["best_passed_psnr"])
        pooled[name] = early_stopping_summary(returned, best)
    report = {
        "what": "returned-vs-best gap (dB) of early-stopping detectors, pooled over every DIP run of every image",
        "task": f"denoise sigma {args.sigma}", "width": args.width, "genotypes_per_image": args.genotypes,
        "images": [str(p) for p in args.images], "pooled": pooled,
        "per_image": {k: r.analysis["early_stopping"] for k, r in studies.items()},
        "strip_mse_tau": {k: r.analysis["metrics"]["psd_db_strip_mse"]["best_psnr"]["kendall_tau"]
                          for k, r in studies.items()},
    }
    args.results.write_text(json.dumps(report, indent=1) + "\n")
    for name, e in pooled.items():
        print(f"{name:28s} runs {e['runs']:3d} within {100 * e['within']:5.1f} % worst {e['worst_gap']:5.2f} "
              f"beyond {e['beyond_never']} mean {e['mean_gap']:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
