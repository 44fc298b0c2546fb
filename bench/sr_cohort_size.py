"""Super-resolution: the cohort stage at the low-resolution image's own size vs a 64 px output.

The cohort stage fits a small copy of the problem.  For x4 super-resolution a
64 px network output leaves a 16 px low-resolution image to fit; the search
now keeps the low-resolution image at a 64 px shorter side, or its full size
when smaller (``Observation.cohort_problem``).  This runs the quick preset's
search both ways on HR crops (same seed, same budget) and reports each
pick, its restored PSNR (Y channel) and bicubic upsampling's.

    python bench/sr_cohort_size.py HR.png [...] [--factor 4] [--rules before,after] [--results FILE]

(``--rules after`` on crops whose low-resolution image is under 64 px, where
both rules train the cohort at the same size: the quick preset vs bicubic.)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import isnas_fast
from isnas_fast.io import load_image
from isnas_fast.quality import psnr
from isnas_fast.tasks import Observation, SuperResolve


def bicubic(lr: torch.Tensor, factor: int) -> torch.Tensor:
    """PIL bicubic upsampling of (1, C, h, w) in [0, 1], per channel in float mode."""
    planes = [np.asarray(Image.fromarray(p).resize((p.shape[1] * factor, p.shape[0] * factor),
                                                  Image.Resampling.BICUBIC), dtype=np.float32)
              for p in lr[0].numpy()]
    return torch.from_numpy(np.stack(planes)[None]).clamp(0, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--rules", default="before,after", help="which cohort sizes to run (before, after)")
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results" / "sr-cohort-cpu.json")
    args = p.parse_args(argv)
    f = args.factor
    new_rule = Observation.cohort_problem

    def old_rule(self, short_side=64):  # the network output's shorter side = short_side, for every task
        return self.resized(short_side)

    rows = {}
    for path in args.images:
        clean = load_image(path)
        obs = SuperResolve(f).corrupt(clean, seed=0)
        y_ch = clean.shape[1] == 3
        row = {"size": list(clean.shape[-2:]), "bicubic": float(psnr(bicubic(obs.y, f), clean, y_channel=y_ch)[0])}
        rules = {"before": old_rule, "after": new_rule}
        for name in args.rules.split(","):
            rule = rules[name]
            Observation.cohort_problem = rule
            try:
                t = time.perf_counter()
                r = isnas_fast.restore(obs.y, "sr", factor=f, ground_truth=clean, seed=0, quiet=True)
            finally:
                Observation.cohort_problem = new_rule
            row[name] = {"pick": str(r.genotype), "psnr": r.psnr, "cohort_size": r.search.stage_sizes["cohort"],
                         "seconds": time.perf_counter() - t, "iterations_run": r.dip.iterations_run}
        rows[path.stem] = row
        print(path.stem, json.dumps(row), flush=True)
    args.results.write_text(json.dumps({"what": __doc__.splitlines()[0], "factor": f, "preset": "quick",
                                        "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
