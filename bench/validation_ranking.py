"""Does the held-out error rank the cohort as the ground truth does?

For each clean image (the tuning images of ``search_images.py``), sigma 25,
seed 0: the quick preset's cohort (the 4 best-scoring of 32 candidates, and
NAS-DIP's genotype) fits the noisy image with a fifth of its pixels held
out, 300 steps, outputs kept every 10 steps.  Per member: the held-out
error (the validated selection's score), the step where it was least, and
the PSNR against the clean image of its best kept output (an oracle, to
compare).  Writes one JSON line per image.

    .venv/bin/python bench/search_images.py runs/search-images
    .venv/bin/python bench/validation_ranking.py bench/results/validation-ranking-cpu.jsonl runs/search-images/tuning/*.png
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from isnas_fast.io import load_image
from isnas_fast.quality import psnr
from isnas_fast.search import candidate_list, preset, rank_cohort, score_candidates, train_cohort
from isnas_fast.search.validation import fixed_genotype, heldout_error, holdout_mask, snapshot_steps, validation_problem
from isnas_fast.tasks import Denoise


def rank_one(path: str, seed: int = 0) -> dict:
    clean = load_image(path)
    obs = Denoise(25).corrupt(clean, seed=seed)
    s = preset("quick")
    pool, _ = candidate_list(s.candidates, s.num_candidates, seed)
    scores = score_candidates(obs, pool, s.metrics, width=s.width, seed=seed, quiet=True)
    union = [m.genotype for m in rank_cohort(pool, scores[:, 0], s.cohort_size)]
    anchor = fixed_genotype("denoise")
    union += [anchor] if anchor not in union else []
    held = holdout_mask(obs, seed)
    res = train_cohort(union, validation_problem(obs, held), s, seed=seed, device=torch.device("cpu"), quiet=True,
                       snapshots=snapshot_steps(s.cohort_iterations))
    rows = []
    for g in union:
        r = res[g]
        err, at = heldout_error(r, obs, held)
        best = max(float(psnr(o, clean)[0]) for o in [*r.snapshots.values(), *r.raw_snapshots.values()])
        rows.append({"genotype": str(g), "nasdip": g == anchor, "heldout_error": err, "at": at,
                     "best_true_psnr": best})
    return {"image": Path(path).stem, "seed": seed, "members": rows}


def main(out: str, paths: list[str]) -> int:
    torch.set_num_threads(2)
    with open(out, "a") as f:
        for p in paths:
            rec = rank_one(p)
            f.write(json.dumps(rec) + "\n")
            pick = min(rec["members"], key=lambda m: m["heldout_error"])
            best = max(m["best_true_psnr"] for m in rec["members"])
            print(f"{rec['image']}: pick {pick['best_true_psnr']:.2f} dB, best member {best:.2f} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
