"""The quick preset's width: one genotype per crop trained at several widths, PSNR and time.

For each clean crop (denoising, sigma 25, seed 0) the genotype the quick
preset's search picked there (read from ``bench/results/quick-preset-cpu.json``,
written by ``quick_preset_study.py``) is trained at full size with the quick
preset's final-run settings (the task's steps, its early stopping) at each
``--widths``.  Reported: the returned PSNR, the best PSNR the run passed
through, and seconds.

    python bench/width_study.py CROP.png [...] [--widths 16,32,64] [--results FILE]
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
from isnas_fast.search import preset, train_final
from isnas_fast.tasks import Denoise

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--widths", default="16,32,64")
    p.add_argument("--picks", type=Path, default=HERE / "results" / "quick-preset-cpu.json")
    p.add_argument("--results", type=Path, default=HERE / "results" / "width-cpu.json")
    args = p.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    picks = {k: v["grid"]["N32/K4/S300"]["pick"] for k, v in json.loads(args.picks.read_text())["per_image"].items()}
    rows = {}
    for path in args.images:
        clean = load_image(path)
        obs = Denoise(25).corrupt(clean, seed=0)
        row = {"genotype": picks[path.stem]}
        for w in widths:
            t = time.perf_counter()
            run = train_final(picks[path.stem], obs, preset("quick", width=w), seed=0, ground_truth=clean, quiet=True)
            row[f"w{w}"] = {"returned": float(psnr(run.dip.output.float().clamp(0, 1), clean)[0]),
                            "best": max(run.dip.psnr_curve), "seconds": time.perf_counter() - t,
                            "iterations_run": run.dip.iterations_run}
        rows[path.stem] = row
        print(path.stem, "  ".join(f"w{w} {row[f'w{w}']['returned']:.2f}/{row[f'w{w}']['best']:.2f} dB "
                                   f"{row[f'w{w}']['seconds']:.0f} s" for w in widths), flush=True)
    summary = {f"w{w}": {"returned_mean": statistics.mean(r[f"w{w}"]["returned"] for r in rows.values()),
                         "best_mean": statistics.mean(r[f"w{w}"]["best"] for r in rows.values()),
                         "seconds_mean": statistics.mean(r[f"w{w}"]["seconds"] for r in rows.values())}
               for w in widths}
    print(json.dumps(summary, indent=1))
    args.results.write_text(json.dumps({"what": __doc__.splitlines()[0], "task": "denoise sigma 25",
                                        "summary": summary, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
