"""Pool several ``isnas-fast study`` folders: tau per image and early stopping over every run.

Reads each folder's ``study.json`` (tau, top-K, the search's pick) and its
``rows.jsonl`` (every trained genotype's probes: what each early-stopping
detector returned against the best PSNR the run passed through), and writes
one JSON file with the per-image table and each detector's pooled
returned-vs-best gap.

    python bench/study_summary.py STUDY_DIR [...] [--results FILE]

The held-out crops of ``bench/README.md`` were made and studied with::

    isnas-fast corrupt CROP.png --task denoise --sigma 25 -o NAME-noisy.png
    isnas-fast study NAME-noisy.png --task denoise --ground-truth CROP.png --candidates 16 --out NAME/
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from isnas_fast.io.records import RecordLog
from isnas_fast.study.analysis import early_stopping_summary

METRIC = "psd_db_strip_mse"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("studies", nargs="+", type=Path)
    p.add_argument("--note", default="", help="a line stored with the results (what differs from today's code)")
    p.add_argument("--results", type=Path,
                   default=Path(__file__).resolve().parent / "results" / "study-heldout-cpu.json")
    args = p.parse_args(argv)
    images, gaps = {}, {}
    for folder in args.studies:
        a = json.loads((folder / "study.json").read_text())["analysis"]
        m = a["metrics"][METRIC]
        pick = a["picks"].get(METRIC, {})
        images[folder.name] = {
            "tau_best": m["best_psnr"]["kendall_tau"], "p_best": m["best_psnr"]["kendall_p"],
            "tau_returned": m["returned_psnr"].get("kendall_tau"),
            "top1": m["best_psnr"]["top1"], "top5": m["best_psnr"]["top5"],
            "pick_percentile": pick.get("best", {}).get("percentile"),
            "pick_minus_median": -pick["best"]["gap_to_median"] if pick else None,
            "pick_returned": (pick.get("early_stopped") or {}).get("psnr"),
            "nasdip_returned": ((a.get("nasdip") or {}).get("early_stopped") or {}).get("psnr"),
            "early_stopping": a["early_stopping"],
        }
        for r in RecordLog(folder / "rows.jsonl").read():
            if r.get("kind") != "genotype":
                continue
            for name, probe in r["probes"].items():
                gaps.setdefault(name, ([], []))
                gaps[name][0].append(probe.get("psnr"))
                gaps[name][1].append(r["best_passed_psnr"])
    pooled = {name: early_stopping_summary(ret, best) for name, (ret, best) in gaps.items()}
    for name, img in images.items():
        print(f"{name:12s} tau {img['tau_best']:+.3f} (p {img['p_best']:.3g})  top-1 {img['top1']!s:5s} "
              f"top-5 {img['top5']!s:5s}  pick at {img['pick_percentile']:.0f} %")
    for name, e in pooled.items():
        print(f"{name:30s} runs {e['runs']:3d} within 0.5 dB {100 * e['within']:5.1f} %  worst {e['worst_gap']:5.2f}"
              f"  > 1.5 dB {e['beyond_never']:2d}  mean {e['mean_gap']:+.2f}")
    args.results.write_text(json.dumps({"what": __doc__.splitlines()[0], "note": args.note, "metric": METRIC, "images": images,
                                        "early_stopping_pooled": pooled}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
