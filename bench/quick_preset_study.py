"""Choosing the quick preset's knobs by measurement, and early stopping over many runs.

For each image (a clean crop; the noisy input is made here: sigma 25, seed 0)
the 32 candidates of the quick preset's sample of the 522 list and the NAS-DIP
genotype are each trained for the task's 1200 steps at ``--width``.  Every
run records its PSNR curve, what each early-stopping detector below would
have returned, and its smoothed output after 150, 300, 600 and 1200 steps.

For 64-px crops the cohort stage's problem is the image itself, so a cohort
member trained S steps IS the first S steps of these runs: every
(candidates N, cohort size K, cohort steps S) of the quick preset is then
evaluated without training again -- the search's pick among the first N
candidates (top K by psd_db_strip_mse, selection on the outputs after S
steps) and the PSNR early stopping returns for it -- and costed from the
measured times (scoring per candidate, DIP per member-step).

    python bench/quick_preset_study.py CROP.png [...] --out DIR [--width 16] [--detector wmv/w100/p1000/r0.2]

Writes ``DIR/<image>/rows.jsonl`` (+ snapshots; a rerun resumes) and
``--results`` (default ``bench/results/quick-preset-cpu.json``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from isnas_fast.device import seeded
from isnas_fast.dip import DIPSettings, EarlyStopping as E, fit_dip_group
from isnas_fast.dip.monitor import probe_name
from isnas_fast.genotype import BASELINES
from isnas_fast.io import load_image
from isnas_fast.io.records import RecordLog
from isnas_fast.network import build_network
from isnas_fast.search import candidate_list, genotype_seed, rank_cohort, score_candidates, select_member
from isnas_fast.study.analysis import early_stopping_summary
from isnas_fast.tasks import Denoise

DETECTORS = (  # ES-WMV and its variants (the discrepancy stop is measured by ``isnas-fast study``)
    E(100, 1000, "wmv"), E(100, 300, "wmv"), E(100, 200, "wmv"),
    E(100, 1000, "wmv", rise=0.1), E(100, 1000, "wmv", rise=0.2), E(100, 1000, "wmv", rise=0.3),
    E(50, 1000, "wmv", rise=0.2), E(100, 300, "wmv", rise=0.2),
    E(100, 300, "emv", 0.1), E(100, 1000, "emv", 0.1, rise=0.2),
    E(100, 100, "shift"),
)
SNAPSHOTS = (150, 300, 600, 1200)
NS, KS = (8, 16, 32), (2, 4, 8)
METRIC = "psd_db_strip_mse"


def study_image(path: Path, out: Path, width: int, group: int) -> dict:
    clean = load_image(path)
    obs = Denoise(25).corrupt(clean, seed=0)
    genotypes, _ = candidate_list("builtin522", 32, 0)
    t = time.perf_counter()
    scores = score_candidates(obs, genotypes, [METRIC], width=width, seed=0, quiet=True)[:, 0]
    score_s = (time.perf_counter() - t) / len(genotypes)
    out.mkdir(parents=True, exist_ok=True)
    log = RecordLog(out / "rows.jsonl")
    done = {r["genotype"] for r in log.read()}
    todo = [(g, None) for g in genotypes if str(g) not in done]  # None: the image's own channel count
    base = BASELINES["nasdip-denoise"]
    if f"nasdip:{base}" not in done:
        todo.append((base, 32))
    for start in range(0, len(todo), group):
        chunk = todo[start:start + group]
        nets, seeds = [], []
        for g, cin in chunk:
            seeds.append(genotype_seed(0, g))
            with seeded(seeds[-1]):
                nets.append(build_network(g, cin or obs.channels, obs.channels, width))
        t = time.perf_counter()
        res = fit_dip_group(nets, obs, DIPSettings(1200), seeds=seeds, ground_truth=clean, quiet=True,
                            probes=DETECTORS, snapshots=SNAPSHOTS)
        step_s = (time.perf_counter() - t) / (1200 * len(chunk))
        for (g, cin), r in zip(chunk, res):
            name = str(g) if cin is None else f"nasdip:{g}"
            torch.save({k: v.cpu() for k, v in r.snapshots.items()}, out / f"snap-{name.replace(':', '_')}.pt")
            passed = max(max(r.psnr_curve), max(r.psnr_raw_curve))
            log.append({"genotype": name, "best_psnr": max(r.psnr_curve), "best_passed_psnr": passed,
                        "final_psnr": r.psnr_curve[-1], "probes": r.probes, "step_s": step_s})
        print(f"  {path.stem}: {start + len(chunk)}/{len(todo)} trained", flush=True)
    rows = {r["genotype"]: r for r in log.read()}
    snaps = {g: torch.load(out / f"snap-{g.replace(':', '_')}.pt") for g in rows}
    return {"genotypes": [str(g) for g in genotypes], "scores": scores.tolist(), "rows": rows, "snaps": snaps,
            "score_s": score_s, "step_s": statistics.median(r["step_s"] for r in rows.values())}


def evaluate(data: dict, detector: str) -> dict:
    gl, rows = data["genotypes"], data["rows"]
    returned = {g: rows[g]["probes"][detector]["psnr"] for g in rows}
    base = next(g for g in rows if g.startswith("nasdip:"))
    best32 = max(rows[g]["best_psnr"] for g in gl)
    grid = {}
    for n in NS:
        sub = gl[:n]
        cohort_all = rank_cohort(sub, torch.tensor(data["scores"][:n]), max(KS))
        for k in KS:
            cohort = cohort_all[:k]
            for s in SNAPSHOTS:
                outs = torch.stack([data["snaps"][str(m.genotype)][s][0] for m in cohort])
                idx, _, _ = select_member(outs, torch.tensor([m.metric_value for m in cohort]))
                pick = str(cohort[idx].genotype)
                grid[f"N{n}/K{k}/S{s}"] = {
                    "pick": pick, "returned": returned[pick], "best": rows[pick]["best_psnr"],
                    "seconds": n * data["score_s"] + k * s * data["step_s"],
                }
    return {"grid": grid, "nasdip_returned": returned[base], "nasdip_best": rows[base]["best_psnr"],
            "best_of_32": best32, "median_returned": statistics.median(returned[g] for g in gl),
            "median_best": statistics.median(rows[g]["best_psnr"] for g in gl),
            "final_step_s": data["step_s"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--group", type=int, default=11)
    p.add_argument("--detector", default="wmv/w100/p1000/r0.2", help="detector the picks are scored with")
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results" / "quick-preset-cpu.json")
    args = p.parse_args(argv)
    data = {}
    for path in args.images:
        t = time.perf_counter()
        data[path.stem] = study_image(path, args.out / path.stem, args.width, args.group)
        print(f"{path.stem}: {time.perf_counter() - t:.0f} s", flush=True)
    names = [probe_name(d) for d in DETECTORS]
    pooled = {}
    for name in names:
        ret = [r["probes"][name]["psnr"] for d in data.values() for r in d["rows"].values()]
        best = [r["best_passed_psnr"] for d in data.values() for r in d["rows"].values()]
        pooled[name] = early_stopping_summary(ret, best)
    per_image = {k: evaluate(d, args.detector) for k, d in data.items()}
    table = {}
    for key in next(iter(per_image.values()))["grid"]:
        vals = [v["grid"][key] for v in per_image.values()]
        table[key] = {
            "returned_mean": statistics.mean(x["returned"] for x in vals),
            "minus_nasdip": statistics.mean(x["returned"] - v["nasdip_returned"] for x, v in zip(vals, per_image.values())),
            "below_best_of_32": statistics.mean(v["best_of_32"] - x["best"] for x, v in zip(vals, per_image.values())),
            # the pick's peak (an ideal stop): architecture quality apart from the detector
            "best_mean": statistics.mean(x["best"] for x in vals),
            "best_minus_nasdip": statistics.mean(x["best"] - v["nasdip_best"] for x, v in zip(vals, per_image.values())),
            "best_minus_median": statistics.mean(x["best"] - v["median_best"] for x, v in zip(vals, per_image.values())),
            "seconds": statistics.mean(x["seconds"] for x in vals),
        }
    report = {"what": __doc__.splitlines()[0], "width": args.width, "detector": args.detector,
              "images": [str(p) for p in args.images], "early_stopping": pooled, "table": table,
              "per_image": per_image}
    args.results.write_text(json.dumps(report, indent=1) + "\n")
    for name, e in pooled.items():
        print(f"{name:26s} runs {e['runs']:3d} within {100 * e['within']:5.1f} % worst {e['worst_gap']:5.2f} "
              f"beyond {e['beyond_never']} mean {e['mean_gap']:+.2f}")
    for key, row in table.items():
        print(f"{key:14s} returned {row['returned_mean']:.2f}  vs NAS-DIP {row['minus_nasdip']:+.2f}  "
              f"pick's best {row['best_mean']:.2f} (vs NAS-DIP {row['best_minus_nasdip']:+.2f}, vs median "
              f"{row['best_minus_median']:+.2f}, below best of 32 {row['below_best_of_32']:.2f})  cost {row['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
