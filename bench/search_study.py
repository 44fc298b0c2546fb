"""The default search against the fixed networks and the classical reference, from suite folders.

Reads the ``results.jsonl`` of one or more ``isnas-fast suite`` folders run
on the same images and seeds (e.g. the default ``isnas`` in one folder, the
baselines from an earlier run in another: rows of a method are taken from
the first folder that has them), checks that every paired row was made from
the same corrupted input (``corruption_seed`` and the image's sha256), and
prints, per image set, the goal table of the search study:

* per method: mean PSNR with its 95 % Student-t interval, seconds per job;
* ``isnas - method`` paired by image and seed: mean, 95 % CI, wins/losses;
* per image, ``isnas - nasdip`` averaged over its seeds (the worst first).

    .venv/bin/python bench/search_study.py --set tuning runs/a runs/b --set held_out runs/c \\
        [--json bench/results/search-study-cpu.json]

The images are those of ``bench/search_images.py``.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from isnas_fast.stats import mean_ci, paired_comparison

BASELINES = ("nasdip", "dip-skip", "bm3d", "bicubic", "biharmonic", "random")


def _rows(folders: list[str]) -> tuple[dict, dict]:
    """(image, method, seed) -> row, the first folder's for each method; image -> sha256."""
    rows: dict = {}
    shas: dict = {}
    owner: dict = {}
    for folder in folders:
        meta = json.loads((Path(folder) / "suite.json").read_text())
        for name, info in meta.get("images", {}).items():
            if shas.setdefault(name, info["sha256"]) != info["sha256"]:
                raise SystemExit(f"image {name} differs between the folders")
        for line in (Path(folder) / "results.jsonl").read_text().splitlines():
            r = json.loads(line)
            if owner.setdefault(r["method"], folder) != folder:
                continue
            rows.setdefault((r["image"], r["method"], r["seed"]), r)
    return rows, shas


def study(folders: list[str]) -> dict:
    """The goal table of one image set (see the module docstring) as a dict."""
    rows, _ = _rows(folders)
    methods = sorted({m for _, m, _ in rows}, key=lambda m: (m != "isnas", m))
    keys = sorted({(i, s) for i, m, s in rows if m == "isnas"})
    out: dict = {"images": sorted({i for i, _ in keys}), "seeds": sorted({s for _, s in keys}), "methods": {},
                 "paired": {}, "per_image_vs_nasdip": {}}
    for m in methods:
        vals = [rows[(i, m, s)]["psnr"] for i, s in keys if (i, m, s) in rows]
        secs = [rows[(i, m, s)]["timings_s"].get("total") for i, s in keys if (i, m, s) in rows]
        mean, half = mean_ci(vals)
        out["methods"][m] = {"n": len(vals), "psnr": mean, "ci95": half,
                             "s_per_job": sum(x for x in secs if x) / max(1, len(secs))}
    for m in methods:
        if m == "isnas":
            continue
        pairs = [(i, s) for i, s in keys if (i, m, s) in rows]
        for i, s in pairs:
            a, b = rows[(i, "isnas", s)], rows[(i, m, s)]
            if a["corruption_seed"] != b["corruption_seed"]:
                raise SystemExit(f"{i} seed {s}: isnas and {m} saw different corrupted inputs")
        c = paired_comparison([rows[(i, "isnas", s)]["psnr"] for i, s in pairs],
                              [rows[(i, m, s)]["psnr"] for i, s in pairs])
        out["paired"][m] = {"pairs": c.n, "mean": c.mean, "ci95": c.half_width, "wins": c.wins, "ties": c.ties,
                            "losses": c.losses}
    per = defaultdict(list)
    for i, s in keys:
        if (i, "nasdip", s) in rows:
            per[i].append(rows[(i, "isnas", s)]["psnr"] - rows[(i, "nasdip", s)]["psnr"])
    out["per_image_vs_nasdip"] = dict(sorted(((i, sum(v) / len(v)) for i, v in per.items()), key=lambda t: t[1]))
    return out


def markdown(name: str, t: dict) -> str:
    lines = [f"### {name}: {len(t['images'])} images x seeds {t['seeds']}", "",
             "| method | n | PSNR (dB, mean ± 95 % CI) | s per job | isnas − method | 95 % CI | wins / ties / losses |",
             "|---|---|---|---|---|---|---|"]
    for m, v in t["methods"].items():
        p = t["paired"].get(m)
        diff = ("", "", "") if p is None else (f"{p['mean']:+.2f}", f"[{p['mean'] - p['ci95']:+.2f}, "
                                               f"{p['mean'] + p['ci95']:+.2f}]",
                                               f"{p['wins']} / {p['ties']} / {p['losses']}")
        ref = " (reference, no training)" if m in ("bm3d", "bicubic", "biharmonic") else ""
        lines.append(f"| {m}{ref} | {v['n']} | {v['psnr']:.2f} ± {v['ci95']:.2f} | {v['s_per_job']:.1f} | "
                     f"{' | '.join(diff)} |")
    worst = list(t["per_image_vs_nasdip"].items())
    lines += ["", "isnas − nasdip per image (mean over seeds, dB): "
              + ", ".join(f"{i} {d:+.2f}" for i, d in worst)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", nargs="+", action="append", metavar=("NAME", "FOLDER"), required=True,
                    help="an image set's name and its suite folders")
    ap.add_argument("--json", help="write the tables here")
    args = ap.parse_args()
    result = {}
    for name, *folders in args.set:
        result[name] = study(folders)
        print(markdown(name, result[name]), end="\n\n")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
