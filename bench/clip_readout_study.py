"""What does the clipped-noise readout gain, and which share of the noise should it assume?

A denoising run fits ``y = clip(x + n)`` and so estimates ``E[y]``, which the
clip pulls away from 0 and 1 (``isnas_fast/dip/readout.py``).  The readout
moves the estimate back towards ``x``, by as much as an estimate whose own
error has variance ``share * sigma^2`` should move.  It changes only what is
returned, not the training, so one run without it gives every variant:

* ``run``: NAS-DIP's denoising network by name (what the default restore
  ends with unless a searched member clears the margin), the quick preset
  with its early stop, ``clip_readout=False``, one torch thread; the raw
  output of each run is kept in ``--cache``.  Tuning: the 16 tuning crops of
  ``search_images.py`` at sigma 25, noise draws and seeds 0 and 1.  Test
  (``--fresh``): the 56 crops of ``stop_curves.py``'s five fresh sets, cut at
  64 px, sigma 25 and 50, noisy as ``stop_curves.noisy_crop``, seed 0.
* ``judge``: the readout with each ``--shares`` applied to every kept output;
  PSNR gains over the raw output per run and per image; writes
  ``bench/results/clip-readout-cpu.json``.

    .venv/bin/python bench/search_images.py runs/si
    .venv/bin/python bench/clip_readout_study.py run --images runs/si --cache runs/readout [--fresh]
    .venv/bin/python bench/clip_readout_study.py judge --cache runs/readout
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import isnas_fast  # noqa: E402
from isnas_fast.dip.readout import ERROR_SHARE, apply_readout, clipped_noise_readout  # noqa: E402
from isnas_fast.io import load_image  # noqa: E402
from isnas_fast.quality import psnr  # noqa: E402
from isnas_fast.tasks import Denoise  # noqa: E402

ARCH = "nasdip-denoise"
SHARES = (0.0, 1 / 64, 1 / 32, 1 / 16, 1 / 8)


def _restore(noisy: torch.Tensor, clean: torch.Tensor, sigma: float, seed: int, path: Path, **extra) -> None:
    if path.exists():
        return
    r = isnas_fast.restore(noisy, "denoise", sigma=sigma, arch=ARCH, seed=seed, ground_truth=clean, quiet=True,
                           clip_readout=False)
    torch.save({"out": r.tensor.float(), "clean": clean, "psnr": r.psnr, "stop": r.dip.stopped_at, "sigma": sigma,
                "seed": seed, **extra}, path)
    print(path.name, f"{r.psnr:.2f}", flush=True)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.images:
        for p in sorted((Path(args.images) / "tuning").glob("*.png")):
            clean = load_image(p)
            for seed in (0, 1):
                noisy = Denoise(25).corrupt(clean, seed=seed).y
                _restore(noisy, clean, 25, seed, cache / f"tuning-25-{p.stem}-{seed}.pt", crop=p.stem, source=p.stem)
    if args.fresh:
        import stop_curves as sc
        for which in sc.FRESH_SETS:
            for i, (name, top, left) in enumerate(sc.crops(which)):
                for sigma in (25, 50):
                    clean, noisy = sc.noisy_crop(name, top, left, sigma, 64)
                    _restore(noisy, clean, sigma, 0, cache / f"fresh-{sigma}-{which}_{i:02d}-0.pt",
                             crop=f"{which}_{i:02d}", source=name)


def _ci(xs: list[float]) -> list[float]:
    m = statistics.mean(xs)
    h = 1.96 * statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan")
    return [round(m - h, 4), round(m + h, 4)]


def judge(args: argparse.Namespace) -> None:
    cache = Path(args.cache)
    out: dict = {"arch": ARCH, "default_share": ERROR_SHARE, "sets": {}}
    for part in ("tuning", "fresh"):
        files = sorted(cache.glob(f"{part}-*.pt"))
        if not files:
            continue
        runs = []
        for f in files:
            d = torch.load(f)
            sigma, name, seed = d["sigma"], d["crop"], d["seed"]
            base = float(psnr(d["out"], d["clean"])[0])
            gains = {}
            for share in args.shares:
                table = clipped_noise_readout(int(sigma) / 255.0, error_share=share)
                gains[f"{share:.6g}"] = float(psnr(apply_readout(d["out"], table).clamp(0, 1), d["clean"])[0]) - base
            runs.append({"crop": name, "source": d["source"], "sigma": int(sigma), "seed": int(seed),
                         "psnr": base, "stop": d["stop"], "gain": gains})
        summary = {}
        for key in runs[0]["gain"]:
            g = [r["gain"][key] for r in runs]
            per_image: dict[str, list[float]] = {}
            for r in runs:
                per_image.setdefault(f"{r['crop']} sigma {r['sigma']}", []).append(r["gain"][key])
            img = {k: statistics.mean(v) for k, v in per_image.items()}
            worst = min(img, key=img.get)
            summary[key] = {"runs": len(g), "mean": round(statistics.mean(g), 4), "ci95": _ci(g),
                            "worst_run": round(min(g), 4), "best_run": round(max(g), 4),
                            "runs_below_-0.1": sum(x < -0.1 for x in g), "runs_above_0.1": sum(x > 0.1 for x in g),
                            "worst_image": [worst, round(img[worst], 4)]}
            print(f"{part:6s} share {key:>9s}: mean {summary[key]['mean']:+.3f} {summary[key]['ci95']} "
                  f"worst run {summary[key]['worst_run']:+.2f} best {summary[key]['best_run']:+.2f} "
                  f"below -0.1 dB: {summary[key]['runs_below_-0.1']} worst image {worst} {img[worst]:+.2f}")
        out["sets"][part] = {"summary": summary, "runs": runs}
    path = HERE / "results" / "clip-readout-cpu.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="restore the crops without the readout and keep the raw outputs")
    r.add_argument("--images", help="the folder search_images.py wrote (its tuning/ crops)")
    r.add_argument("--fresh", action="store_true", help="also the fresh sets' crops at 64 px, sigma 25 and 50")
    r.add_argument("--cache", required=True)
    j = sub.add_parser("judge", help="apply the readout with each share to the kept outputs")
    j.add_argument("--cache", required=True)
    j.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    args = ap.parse_args()
    run(args) if args.cmd == "run" else judge(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
