"""Can held-out pixels tell NAS-DIP from DIP-skip on an image, without ground truth?

For every noisy input of a suite folder (``inputs/<image>-seed<k>.png`` beside
``<image>-clean.png``), the cohort stage of the validated selection is run on
the task's fixed networks only: NAS-DIP's genotype as the cohort trains it
(width W, the image's channels as code), NAS-DIP by name (its 32-channel code)
and DIP-skip (width 128, 32-channel code), each fitting the cohort problem
(64 px) with a fifth of the pixels held out, ``--steps`` steps, outputs kept
every 10.  Per network it records the held-out error (least over the kept
outputs, raw and smoothed), the step of it, the standard error of its paired
difference to the NAS-DIP-genotype anchor, and the ground-truth PSNR of that
output (analysis only).  One JSON line per (image, seed) goes to ``--out``.

A rule ("pick DIP-skip when its held-out error is below NAS-DIP's by more than
m standard errors") is then judged against the final runs' PSNRs of the suite
folders with the ``judge`` command:

    python bench/fixed_validation.py run SUITE_DIR --out rows.jsonl [--steps 300]
    python bench/fixed_validation.py judge rows.jsonl --nasdip SUITE_A --dipskip SUITE_B
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from isnas_fast.io import load_image
from isnas_fast.network import BASELINE_INPUT_CHANNELS
from isnas_fast.search import PRESETS
from isnas_fast.search.candidates import genotype_seed
from isnas_fast.search.training import GroupMember, train_group
from isnas_fast.search.validation import (best_heldout_output, fixed_genotype, heldout_scores, holdout_mask,
                                          paired_standard_error, snapshot_steps, validation_problem)
from isnas_fast.tasks import Denoise


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return 10 * math.log10(1 / mse) if mse > 0 else float("inf")


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    folder = Path(args.suite) / "inputs"
    settings = PRESETS["quick"]
    done = set()
    out = Path(args.out)
    if out.exists():
        done = {(r["image"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}
    inputs = sorted(p for p in folder.glob("*-seed*.png"))
    for p in inputs:
        image, seed = p.stem.rsplit("-seed", 1)
        seed = int(seed)
        if (image, seed) in done:
            continue
        t0 = time.perf_counter()
        noisy = load_image(p)
        clean = load_image(folder / f"{image}-clean.png")
        obs = Denoise(sigma=args.sigma).observe(noisy)
        small = obs.cohort_problem(settings.small_side)
        clean_small = torch.nn.functional.interpolate(clean, size=small.y.shape[-2:], mode="area") \
            if clean.shape[-2:] != small.y.shape[-2:] else clean
        held = holdout_mask(small, seed)
        anchor = fixed_genotype("denoise")
        members = {
            "nasdip-genotype": GroupMember(anchor, genotype_seed(seed, anchor), small.channels, settings.width),
            "nasdip": GroupMember("nasdip-denoise", genotype_seed(seed, "nasdip-denoise"),
                                  BASELINE_INPUT_CHANNELS, settings.width),
            # the denoising variant of DIP-skip, although the held-out problem is an inpainting one
            "dip-skip": GroupMember("dip-skip", genotype_seed(seed, "dip-skip"), BASELINE_INPUT_CHANNELS, 128,
                                    task="denoise"),
        }
        base = settings.cohort_run("denoise")
        options = replace(base, dip=replace(base.dip, iterations=args.steps),
                          snapshots=tuple(snapshot_steps(args.steps)), together=False)
        trained = train_group(list(members.values()), validation_problem(small, held), options,
                              device=torch.device("cpu"), quiet=True, desc="fixed")
        results = {name: t.result for name, t in zip(members, trained)}
        # the anchor of the paired standard errors: NAS-DIP's genotype, as the cohort trains it
        keyed = {anchor if name == "nasdip-genotype" else name: r for name, r in results.items()}
        scores = heldout_scores(keyed, small, held, fixed=anchor)
        row = {"image": image, "seed": seed, "steps": args.steps, "seconds": round(time.perf_counter() - t0, 1)}
        for name, r in results.items():
            sc = scores[anchor if name == "nasdip-genotype" else name]
            _, _, best_out = best_heldout_output(r, small, held)
            oracle = max(_psnr(o, clean_small) for o in [*r.snapshots.values(), *r.raw_snapshots.values()])
            row[name] = {"error": sc.error, "at": sc.at, "se": sc.se_vs_fixed,
                         "psnr_at": round(_psnr(best_out, clean_small), 3), "psnr_oracle": round(oracle, 3)}
        # the paired standard error of DIP-skip against NAS-DIP by name, on their best kept outputs
        row["se_dipskip_vs_nasdip"] = paired_standard_error(best_heldout_output(results["dip-skip"], small, held)[2],
                                                            best_heldout_output(results["nasdip"], small, held)[2], small, held)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{image} seed {seed}: " + ", ".join(
            f"{n} err {row[n]['error']:.5f} @ {row[n]['at']} ({row[n]['psnr_at']:.2f} dB)" for n in members)
            + f"  [{row['seconds']} s]", flush=True)


def _final_psnr(folder: str, method: str) -> dict[tuple[str, int], float]:
    rows = [json.loads(line) for line in (Path(folder) / "results.jsonl").read_text().splitlines() if line.strip()]
    return {(r["image"], r["seed"]): r["psnr"] for r in rows if r.get("method") == method and "psnr" in r}


def judge(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for p in args.rows for line in Path(p).read_text().splitlines() if line.strip()]
    nas = {}
    for f in args.nasdip:
        nas.update(_final_psnr(f, "nasdip"))
    skip = {}
    for f in args.dipskip:
        skip.update(_final_psnr(f, "dip-skip"))
    print("| margin (SE) | pairs | rule − NAS-DIP (dB) | rule − DIP-skip (dB) | DIP-skip picked | oracle of the two − NAS-DIP |")
    print("|---|---|---|---|---|---|")
    for margin in args.margins:
        d_nas, d_skip, picked, oracle = [], [], 0, []
        per_image: dict[str, list[float]] = {}
        for r in rows:
            k = (r["image"], r["seed"])
            if k not in nas or k not in skip:
                continue
            anchor = r[args.anchor]
            se = r["se_dipskip_vs_nasdip"] if args.anchor == "nasdip" else r["dip-skip"]["se"]
            use_skip = anchor["error"] - r["dip-skip"]["error"] > margin * se
            got = skip[k] if use_skip else nas[k]
            picked += use_skip
            d_nas.append(got - nas[k])
            d_skip.append(got - skip[k])
            oracle.append(max(nas[k], skip[k]) - nas[k])
            per_image.setdefault(r["image"], []).append(got - nas[k])
        if not d_nas:
            print("no pairs: the suites and the rows share no (image, seed)")
            return
        worst = min(statistics.mean(v) for v in per_image.values())
        print(f"| {margin:g} | {len(d_nas)} | {statistics.mean(d_nas):+.2f} (worst image {worst:+.2f}) | "
              f"{statistics.mean(d_skip):+.2f} | {picked} | {statistics.mean(oracle):+.2f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train the fixed networks with held-out pixels on a suite's inputs")
    r.add_argument("suite")
    r.add_argument("--out", required=True)
    r.add_argument("--steps", type=int, default=300)
    r.add_argument("--sigma", type=float, default=25.0)
    r.add_argument("--threads", type=int, default=1)
    j = sub.add_parser("judge", help="what a margin rule would have restored, against the suites' final runs")
    j.add_argument("rows", nargs="+")
    j.add_argument("--nasdip", nargs="+", required=True, help="suite folders with nasdip rows")
    j.add_argument("--dipskip", nargs="+", required=True, help="suite folders with dip-skip rows")
    j.add_argument("--anchor", choices=("nasdip", "nasdip-genotype"), default="nasdip")
    j.add_argument("--margins", type=float, nargs="+", default=[0, 1, 2, 3])
    args = p.parse_args(argv)
    run(args) if args.cmd == "run" else judge(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
