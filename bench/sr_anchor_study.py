"""Super-resolution: two NAS-DIP starts shrunk toward bicubic by how much they agree.

On flat crops a DIP super-resolution carries a fine pattern from its random
start that the downsampler cannot see, so no step removes it (the held-out
cell: NAS-DIP 24.4 dB, bicubic 54.8).  Two starts leave two unrelated
patterns; what the low-resolution pixels determine they share.  With ``a``,
``b`` two starts' images and ``c`` bicubic upsampling of the input, each rule
keeps ``c`` plus the part of the starts' mean difference from ``c`` that the
two agree on (:mod:`isnas_fast.dip.anchor`), per band of spatial frequency:

* ``global``: one band, ``lambda = clip(<a - c, b - c> / |(a + b)/2 - c|^2, 0, 1)``
  (what the quick preset ships);
* ``bands4`` / ``bands8``: a ``lambda`` per ring of the 2-D FFT, edges
  ``BANDS`` (cycles per pixel);
* ``null4``: ``bands4`` with ``lambda = 1`` below the low-resolution Nyquist
  frequency (1/8 cycle per pixel at x4).

``judge`` reads one suite's saved images (``--methods nasdip,bicubic --seeds
2``: the two seeds are two starts on the same input, as super-resolution's
corruption draws no noise) and scores, per image, one start (seed 0), the
mean of the two, bicubic and every rule; paired 95 % Student-t intervals
against one start and against bicubic.  PSNR on the Y channel for RGB, as
the suite measures it; the images are the suite's 8-bit PNGs.  Results go to
``results/sr-anchor-cpu.json`` under ``--name``.

    isnas-fast suite runs/si/tuning --task sr --factor 4 --methods nasdip,bicubic --seeds 2 --threads 1 --workers 2 --out runs/sr-tuning
    python bench/sr_anchor_study.py judge --name tuning runs/sr-tuning
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import record_study  # noqa: E402
from blend_study import _ci, _image, _load  # noqa: E402

from isnas_fast.quality import rgb_to_y  # noqa: E402
from isnas_fast.tasks import bicubic_upsample  # noqa: E402

#: Ring edges (cycles per pixel) of each rule; ``global`` is one band.
BANDS = {"global": [], "bands4": [0.125, 0.25, 0.375], "bands8": [k / 16 for k in range(1, 8)],
         "null4": [0.125, 0.25, 0.375]}


def _psnr_y(x: np.ndarray, ref: np.ndarray) -> float:
    """PSNR (dB) of (H, W, C) images in [0, 1], on the Y channel for RGB (as the suite scores SR)."""
    def y(a: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]
        return (rgb_to_y(t) if t.shape[1] == 3 else t).double().numpy()
    return 10 * math.log10(1.0 / float(np.mean((y(x) - y(ref)) ** 2)))


def shrink(a: np.ndarray, b: np.ndarray, c: np.ndarray, edges: list[float], keep_low: bool = False) -> tuple:
    """``c`` plus, in each ring of the FFT, ``lambda_k`` times the starts' mean difference from ``c``;
    ``keep_low``: ``lambda = 1`` in the first ring.  Returns (image clipped to [0, 1], lambdas)."""
    fa, fb = np.fft.fft2(a - c, axes=(0, 1)), np.fft.fft2(b - c, axes=(0, 1))
    mean = (fa + fb) / 2
    fy, fx = np.fft.fftfreq(a.shape[0])[:, None], np.fft.fftfreq(a.shape[1])[None, :]
    ring = np.digitize(np.sqrt(fy ** 2 + fx ** 2), edges)
    lam = np.ones(ring.shape)
    lams = []
    for k in range(len(edges) + 1):
        sel = ring == k
        shared = float(np.real(fa[sel] * np.conj(fb[sel])).sum())
        power = float((np.abs(mean[sel]) ** 2).sum())
        v = 1.0 if power <= 0 or (keep_low and k == 0) else min(max(shared / power, 0.0), 1.0)
        lam[sel] = v
        lams.append(round(v, 4))
    out = c + np.real(np.fft.ifft2(mean * lam[..., None], axes=(0, 1)))
    return np.clip(out, 0, 1), lams


def judge(args: argparse.Namespace) -> None:
    suite = Path(args.suite)
    rows = _load(suite)
    runs = []
    for (name, seed, method), r in sorted(rows.items()):
        other = rows.get((name, 1, "nasdip"))
        if method != "nasdip" or seed != 0 or other is None:
            continue
        gt, low = _image(suite, r["ground_truth"]), _image(suite, r["input"])
        a, b = _image(suite, r["restored"]), _image(suite, other["restored"])
        gt, low, a, b = (x[..., None] if x.ndim == 2 else x for x in (gt, low, a, b))
        t = torch.from_numpy(np.ascontiguousarray(low.transpose(2, 0, 1)))[None]
        c = bicubic_upsample(t, args.factor)[0].numpy().transpose(1, 2, 0)
        run = {"image": name, "one": _psnr_y(a, gt), "other start": _psnr_y(b, gt),
               "mean of two": _psnr_y((a + b) / 2, gt), "bicubic": _psnr_y(c, gt)}
        for rule, edges in BANDS.items():
            img, lams = shrink(a, b, c, edges, keep_low=rule == "null4")
            run[rule], run[rule + " lambdas"] = _psnr_y(img, gt), lams
        runs.append(run)
    if not runs:
        raise SystemExit(f"no image has nasdip rows of seeds 0 and 1 in {suite}")
    summary = {}
    for v in ("one", "mean of two", "bicubic", *BANDS):
        entry = {"psnr": round(statistics.mean(r[v] for r in runs), 4)}
        for ref in ("one", "bicubic"):
            d = [r[v] - r[ref] for r in runs]
            worst = min(runs, key=lambda r: r[v] - r[ref])
            entry[f"minus_{ref}"] = _ci(d) if v != ref else [0.0, 0.0, 0.0]
            entry[f"wins_losses_vs_{ref}"] = [sum(x > 0 for x in d), sum(x < 0 for x in d)]
            entry[f"worst_vs_{ref}"] = [worst["image"], round(worst[v] - worst[ref], 4)]
        summary[v] = entry
        print(f"{args.name:8s} {v:12s} {entry['psnr']:6.2f}  - one {entry['minus_one'][0]:+.2f} "
              f"[{entry['minus_one'][1]:+.2f}, {entry['minus_one'][2]:+.2f}] worst {entry['worst_vs_one'][0]} "
              f"{entry['worst_vs_one'][1]:+.2f}  - bicubic {entry['minus_bicubic'][0]:+.2f} "
              f"[{entry['minus_bicubic'][1]:+.2f}, {entry['minus_bicubic'][2]:+.2f}] worst "
              f"{entry['worst_vs_bicubic'][0]} {entry['worst_vs_bicubic'][1]:+.2f}")
    record_study(HERE / "results" / "sr-anchor-cpu.json", args.name,
                 {"suite": str(suite), "factor": args.factor, "summary": summary}, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("judge", help="score the rules on a suite's saved images")
    j.add_argument("suite", help="suite folder with nasdip rows of seeds 0 and 1 (super-resolution)")
    j.add_argument("--name", required=True, help="the key the set is stored under in results/sr-anchor-cpu.json")
    j.add_argument("--factor", type=int, default=4)
    args = ap.parse_args()
    judge(args)


if __name__ == "__main__":
    main()
