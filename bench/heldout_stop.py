"""A stop that does not read sigma: the error on held-out noisy pixels, against the
discrepancy stop told the true sigma.

The discrepancy stop is too sharp for any noise estimate's error on small
crops (``sigma_restore.py``, ``sigma_margin.py``).  The held-out pixels that
rank the validated selection's cohort need no sigma: a run that fits the
noisy image with a fifth of its pixels held out sees its error on those
pixels, ``E|f - x|^2 + sigma^2``, fall while it fits the image and rise once
it fits the noise of its neighbours.  Per crop and sigma, NAS-DIP's
denoising architecture at width 16, the quick preset's 1200 steps, seed 0:

* ``told``: the run on every pixel, with the discrepancy stop told the true
  sigma (what ``restore(arch="nasdip-denoise", sigma=true)`` returns);
* ``heldout``: the run with a fifth of the pixels held out
  (:func:`isnas_fast.search.validation.holdout_mask`, seed 0); the output
  (smoothed or raw, every 10 steps) of least held-out error, returned as is:
  the held-out pixels are the network's prediction of them;
* ``heldout_window``: the same run; every 10 steps the mean of its last raw
  outputs (the discrepancy stop's window: at most 100, none of the run's
  first half), the one of least held-out error returned;
* ``rerun``: the run on every pixel, its window mean at the step
  ``heldout_window`` found (the cost of a second run);
* ``oracle``: the best smoothed output of the run on every pixel (ground truth).

The crops are ``noise_estimation.py``'s (``--set tuning``: centre crops of
its tuning sources; ``held_out``: its held-out crops), noisy at each sigma
with the seed sigma and quantised to 8 bits.  PSNR against the clean crop;
writes bench/results/heldout-stop-cpu.json (resumable) and prints, per
method, the mean difference to ``told``, the share within 0.3 dB (or
better) and the worst; then the same for the stop as
:class:`~isnas_fast.dip.early_stopping.HeldOutDetector` runs it (the twin
stops ``patience`` steps after its least error, the run on every pixel
returns its window mean at that step), read off the kept curves, with its
cost in steps against the told stop's.

    .venv/bin/python bench/heldout_stop.py [--set tuning|held_out] [--sigmas 10,25,50] [--images N]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from noise_estimation import HELD_OUT, TUNING, crop, noisy_copy  # noqa: E402

from isnas_fast.dip import fit_dip_group  # noqa: E402
from isnas_fast.dip.monitor import probe_name  # noqa: E402
from isnas_fast.network import build_network  # noqa: E402
from isnas_fast.quality import psnr  # noqa: E402
from isnas_fast.search import preset  # noqa: E402
from isnas_fast.search.candidates import genotype_seed  # noqa: E402
from isnas_fast.search.validation import holdout_mask, snapshot_steps, validation_problem  # noqa: E402
from isnas_fast.network import resolve_architecture  # noqa: E402
from isnas_fast.tasks import Denoise  # noqa: E402

ARCH = "nasdip-denoise"
METHODS = ("heldout", "heldout_window", "rerun", "oracle")


def crops(which: str) -> list[tuple[str, float, float]]:
    return [(n, 1 / 3, 1 / 3) for n in TUNING] if which == "tuning" else list(HELD_OUT)


def one(name: str, top: float, left: float, sigma: int) -> dict:
    clean = crop(name, top, left)
    noisy = noisy_copy(clean, sigma)
    obs = Denoise(sigma).observe(noisy)
    q = preset("quick")
    dip = q.final_run("denoise").dip
    seed = genotype_seed(0, resolve_architecture(ARCH))
    c = int(clean.shape[1])

    def net():
        torch.manual_seed(seed)
        return build_network(ARCH, 32, c, width=16, task="denoise")

    told = q.early_stopping
    every = list(range(1, dip.iterations + 1))
    full = fit_dip_group([net()], obs, dip, seeds=[seed], ground_truth=clean, quiet=True, probes=[told],
                         served=False, compile=False, snapshots=every)[0]
    held = holdout_mask(obs, 0)
    part = fit_dip_group([net()], validation_problem(obs, held), dip, seeds=[seed], quiet=True, served=False,
                         compile=False, snapshots=every)[0]
    n = float(held.sum()) * c

    def err(v: torch.Tensor) -> float:
        return float((((v - obs.y) * held) ** 2).sum()) / n

    def window_mean(raw: dict, t: int) -> torch.Tensor:
        w = max(1, min(told.window, t // 2))  # the discrepancy stop's window: the last outputs, none of the first half
        return torch.stack([raw[k] for k in range(t - w + 1, t + 1)]).double().mean(0).float()

    def q_(v: torch.Tensor) -> float:
        return round(float(psnr(v.clamp(0, 1), clean)[0]), 4)

    checks = snapshot_steps(dip.iterations)
    # the least held-out error among the outputs every 10 steps, raw or smoothed, returned as is
    kept = [(err(v), k, v) for snaps in (part.snapshots, part.raw_snapshots) for k, v in snaps.items() if k in checks]
    e0, at, out = min(kept, key=lambda x: (x[0], x[1]))
    # the least held-out error of the window mean, every 10 steps
    wins = [(err(window_mean(part.raw_snapshots, t)), t) for t in checks if t >= told.window // 2]
    _, at_w = min(wins)
    # the full run's window mean every 10 steps (PSNR), to read any stop step off afterwards
    full_curve = [q_(window_mean(full.raw_snapshots, t)) for t in checks if t >= told.window // 2]
    curve = full.psnr_curve
    return {"image": name, "sigma": sigma,
            "noisy": round(float(psnr(noisy, clean)[0]), 4),
            "told": {"psnr": full.probes[probe_name(told)]["psnr"], "iteration": full.probes[probe_name(told)]["iteration"]},
            "heldout": {"psnr": q_(out), "iteration": at},
            "heldout_window": {"psnr": q_(window_mean(part.raw_snapshots, at_w)), "iteration": at_w},
            "rerun": {"psnr": q_(window_mean(full.raw_snapshots, at_w)), "iteration": at_w},
            "oracle": {"psnr": round(max(curve), 4), "iteration": int(np.argmax(curve)) + 1},
            "curves": {"steps": [t for _, t in wins], "heldout_error": [float(f"{e:.6g}") for e, _ in wins],
                       "window_psnr": full_curve}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("tuning", "held_out"), default="tuning")
    ap.add_argument("--sigmas", default="10,25,50")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "heldout-stop-cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []  # resume
    done = {(r["set"], r["image"], r["sigma"]) for r in rows}
    for name, top, left in crops(args.set)[: args.images]:
        for s in (int(v) for v in args.sigmas.split(",")):
            if (args.set, name, s) in done:
                continue
            rows.append({"set": args.set, **one(name, top, left, s)})
            print(json.dumps(rows[-1]), flush=True)
            out.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    summarise(rows)
    return 0


def stop_with_patience(row: dict, patience: int) -> tuple[int, int]:
    """(step found, last step the twin ran): the held-out error's least window mean, the twin
    stopping ``patience`` steps after it (checked every 10 steps, as the curves were kept)."""
    steps, errors = row["curves"]["steps"], row["curves"]["heldout_error"]
    best, at = float("inf"), 0
    for i, (t, e) in enumerate(zip(steps, errors)):
        if e < best:
            best, at = e, i
        elif t - steps[at] >= patience:
            return steps[at], t
    return steps[at], steps[-1]


def summarise(rows: list[dict]) -> None:
    for which in ("tuning", "held_out"):
        sub = [r for r in rows if r["set"] == which]
        if not sub:
            continue
        for patience in (100, 200, 400):
            d, cost = [], []
            for r in sub:
                at, end = stop_with_patience(r, patience)
                d.append(r["curves"]["window_psnr"][r["curves"]["steps"].index(at)] - r["told"]["psnr"])
                cost.append((end + at) / r["told"]["iteration"])
            d = np.array(d)
            print(f"{which:8s} heldout stop, patience {patience}: - told: {len(d)} runs, mean {d.mean():+.3f} dB, "
                  f"within 0.3 dB (or better) {np.mean(d >= -0.3):.0%}, worse than 1 dB {int(np.sum(d < -1))}, "
                  f"worst {d.min():+.2f}; steps (twin + run) / told's: median {np.median(cost):.2f}x")
        # beside it, the discrepancy stop told the estimated sigma on the same crop and sigma
        # (sigma_restore.py's rows: the same network, seed and noise, an earlier tree)
        restore = Path(__file__).resolve().parent / "results" / "sigma-restore-cpu.json"
        if restore.exists():
            by = {(r["image"], r["sigma"], r["told"]): r["psnr"] for r in json.loads(restore.read_text())["rows"]}
            pairs = [(by[(r["image"], r["sigma"], "auto")] - by[(r["image"], r["sigma"], "true")])
                     for r in sub if (r["image"], r["sigma"], "auto") in by and (r["image"], r["sigma"], "true") in by]
            if pairs:
                d = np.array(pairs)
                print(f"{which:8s} discrepancy told the estimate (sigma_restore.py) - told the true sigma: {len(d)} "
                      f"runs, mean {d.mean():+.3f} dB, within 0.3 dB (or better) {np.mean(d >= -0.3):.0%}, worse "
                      f"than 1 dB {int(np.sum(d < -1))}, worst {d.min():+.2f}")
        for m in METHODS:
            d = np.array([r[m]["psnr"] - r["told"]["psnr"] for r in sub])
            worst = min(sub, key=lambda r: r[m]["psnr"] - r["told"]["psnr"])
            print(f"{which:8s} {m:8s} - told: {len(d)} runs, mean {d.mean():+.3f} dB, within 0.3 dB (or better) "
                  f"{np.mean(d >= -0.3):.0%}, worse than 1 dB {int(np.sum(d < -1))}, worst {d.min():+.2f} "
                  f"({worst['image']}, sigma {worst['sigma']})")


if __name__ == "__main__":
    sys.exit(main())
