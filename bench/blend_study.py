"""Blending NAS-DIP's image with DIP-skip's: which weight, and does it hold on fresh crops?

DIP runs are noisy draws: another network lands elsewhere, and where two
runs' errors differ their weighted mean can be better than either.  NAS-DIP
and DIP-skip win on different images (NAS-DIP on detail, DIP-skip on flat
and saturated crops), and no ground-truth-free rule could tell which
(``fixed_validation.py``); a blend needs no choice.  Read off one suite
with ``--methods nasdip,dip-skip`` (one start each):

``judge`` reads the saved images (``restored/``, 8 bit) and scores, per
image and seed, NAS-DIP, DIP-skip and ``w * NAS-DIP + (1 - w) * DIP-skip``
for each weight of :data:`WEIGHTS`; paired 95 % Student-t intervals against
NAS-DIP and against the better fixed network (the one with the higher
mean), and each image's mean (over seeds) against NAS-DIP.  Results go to
``results/blend-cpu.json`` under ``--name``.

``crops`` writes the 56 crops of ``stop_curves.py``'s five fresh sets at
64 px as clean PNGs: a set never used to choose anything here.

    .venv/bin/python bench/search_images.py runs/si
    isnas-fast suite runs/si/tuning --task denoise --methods nasdip,dip-skip --seeds 2 --threads 1 --workers 2 --out runs/B-tuning
    .venv/bin/python bench/blend_study.py judge --name tuning runs/B-tuning
    .venv/bin/python bench/blend_study.py crops runs/fresh64
    isnas-fast suite runs/fresh64 --task denoise --methods nasdip,dip-skip --seeds 1 --threads 1 --workers 2 --out runs/B-fresh
    .venv/bin/python bench/blend_study.py judge --name fresh runs/B-fresh
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import record_study  # noqa: E402

#: NAS-DIP's weight in the blends scored (DIP-skip's is the rest); 2/3 is the package's.
WEIGHTS = (0.5, 0.6, 2 / 3, 0.75)


def _load(suite: Path) -> dict:
    rows = {}
    for line in (suite / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[(r["image"], r["seed"], r["method"])] = r
    return rows


def _image(suite: Path, rel: str) -> np.ndarray:
    im = Image.open(suite / rel)
    a = np.asarray(im).astype(np.float64)
    return a / (65535.0 if im.mode.startswith("I") or a.max() > 255 else 255.0)


def _psnr(x: np.ndarray, y: np.ndarray) -> float:
    return 10 * math.log10(1.0 / float(np.mean((x - y) ** 2)))


def _ci(d: list[float]) -> list[float]:
    from scipy import stats
    m = statistics.mean(d)
    h = float(stats.t.ppf(0.975, len(d) - 1)) * statistics.stdev(d) / math.sqrt(len(d))
    return [round(m, 4), round(m - h, 4), round(m + h, 4)]


def judge(args: argparse.Namespace) -> None:
    suite = Path(args.suite)
    rows = _load(suite)
    runs = []
    for (name, seed, method), n in sorted(rows.items()):
        k = rows.get((name, seed, "dip-skip"))
        if method != "nasdip" or k is None:
            continue
        gt = _image(suite, n["ground_truth"])
        xn, xk = _image(suite, n["restored"]), _image(suite, k["restored"])
        run = {"image": name, "seed": seed, "nasdip": _psnr(xn, gt), "dip-skip": _psnr(xk, gt),
               "seconds": {"nasdip": n["timings_s"]["total"], "dip-skip": k["timings_s"]["total"]}}
        for w in WEIGHTS:
            run[f"blend {w:.3g}"] = _psnr(w * xn + (1 - w) * xk, gt)
        runs.append(run)
    if not runs:
        raise SystemExit(f"no image has both a nasdip and a dip-skip row in {suite}")
    better = max(("nasdip", "dip-skip"), key=lambda m: statistics.mean(r[m] for r in runs))
    summary = {}
    for v in ("nasdip", "dip-skip", *(f"blend {w:.3g}" for w in WEIGHTS)):
        vs_n = [r[v] - r["nasdip"] for r in runs]
        vs_better = [r[v] - r[better] for r in runs]
        per_image: dict[str, list[float]] = {}
        for r, d in zip(runs, vs_n):
            per_image.setdefault(r["image"], []).append(d)
        img = {k: statistics.mean(x) for k, x in per_image.items()}
        worst = min(img, key=img.get)
        s = summary[v] = {
            "runs": len(runs), "psnr": round(statistics.mean(r[v] for r in runs), 4),
            "minus_nasdip": _ci(vs_n) if v != "nasdip" else [0.0, 0.0, 0.0],
            "minus_better_fixed": [better, *(_ci(vs_better) if v != better else [0.0, 0.0, 0.0])],
            "wins_losses_vs_better_fixed": [sum(x > 0 for x in vs_better), sum(x < 0 for x in vs_better)],
            "worst_image_vs_nasdip": [worst, round(img[worst], 4)],
            "images_below_nasdip_by_0.5": sorted(k for k, x in img.items() if x < -0.5)}
        print(f"{args.name:9s} {v:12s} {s['psnr']:6.2f}  - nasdip {s['minus_nasdip'][0]:+.2f} "
              f"[{s['minus_nasdip'][1]:+.2f}, {s['minus_nasdip'][2]:+.2f}]  - {better} "
              f"{s['minus_better_fixed'][1]:+.2f} [{s['minus_better_fixed'][2]:+.2f}, {s['minus_better_fixed'][3]:+.2f}]"
              f" {s['wins_losses_vs_better_fixed'][0]}/{s['wins_losses_vs_better_fixed'][1]}"
              f"  worst image {worst} {img[worst]:+.2f}; below -0.5: {len(s['images_below_nasdip_by_0.5'])}")
    record_study(HERE / "results" / "blend-cpu.json", args.name,
                 {"suite": str(suite), "better_fixed": better, "summary": summary}, runs)


def crops(args: argparse.Namespace) -> None:
    import stop_curves as sc

    from isnas_fast.io import save_image
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for which in sc.FRESH_SETS:
        for i, (name, top, left) in enumerate(sc.crops(which)):
            clean = sc.crop(name, top, left, args.size)
            stem = name.split(":")[-1].split(".")[0].replace("_", "-").lower()
            save_image(clean, out / f"{which}-{i:02d}-{stem}.png")
    print("wrote", len(list(out.glob("*.png"))), "crops under", out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("judge", help="score the means of the suites' saved images")
    j.add_argument("suite", help="suite folder with nasdip and dip-skip rows")
    j.add_argument("--name", required=True, help="the key the set is stored under in results/blend-cpu.json")
    c = sub.add_parser("crops", help="write the fresh sets' crops as clean PNGs")
    c.add_argument("out")
    c.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    (judge if args.cmd == "judge" else crops)(args)


if __name__ == "__main__":
    main()
