"""Which width, learning rate and step count make DIP converge at the sizes users bring?

The quick preset was chosen on 64 px crops.  Here one DIP run per (image,
side, width, learning rate) denoises a centre crop of side 128, 256 or 512
(sigma 25, noise draw 0) with the network the default restore ends with in
most runs (NAS-DIP's denoising genotype, an input code with the image's
channels), for ``--steps`` steps and no stop, recording against the clean
crop:

* the PSNR of the smoothed output (the EMA, weight 0.99: about the last 100
  outputs, what the default stop's window averages) every 25 steps;
* where the default stop (the discrepancy principle) would have fired and
  the PSNR of what it would have returned;
* seconds per step on this machine (all cores).

From one run the study reads what every smaller step budget would return:
the stop's output when it fired within the budget, the smoothed output at
the budget's last step otherwise.  BM3D told sigma is the classical
reference (``pip install bm3d``).  Rows are appended to a JSON-lines file, one
per run, and runs already there are skipped, so the study resumes.

Images: chosen before any run, a third held out.  ``--set tuning`` runs the
tuning images, ``--set held_out`` the others.

    .venv/bin/python bench/size_study.py --side 256 --width 16 --lr 0.01 --steps 2400
    .venv/bin/python bench/size_study.py --summary
    .venv/bin/python bench/size_study.py --timing --side 128 256 512 --width 16 32 64 128
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from search_images import _source  # noqa: E402

from isnas_fast.dip import DIPSettings, EarlyStopping, fit_dip  # noqa: E402
from isnas_fast.network import build_network  # noqa: E402
from isnas_fast.suite import references  # noqa: E402
from isnas_fast.tasks import Denoise  # noqa: E402

PAPER = HERE.parent / "isnas_fast" / "data" / "paper"
#: (name, source): a skimage.data name, "mpl:" a matplotlib sample, "paper:" a file of the package's paper images.
TUNING = [("astronaut", "astronaut"), ("camera", "camera"), ("coffee", "coffee"), ("f16", "paper:f16_512_rgb.png")]
HELD_OUT = [("rocket", "rocket"), ("grace-hopper", "mpl:grace_hopper.jpg")]
SETS = {"tuning": TUNING, "held_out": HELD_OUT}
DEFAULT_OUT = HERE / "results" / "size-study-cpu.jsonl"
EVERY = 25


def clean_crop(source: str, side: int) -> torch.Tensor | None:
    """The centre side x side crop of ``source`` as (1, C, side, side) in [0, 1]; None if it is smaller."""
    if source.startswith("paper:"):
        from PIL import Image
        with Image.open(PAPER / source[6:]) as im:
            a = np.asarray(im.convert("RGB")).astype(np.float32) / 255.0
    else:
        a = _source(source)
    h, w = a.shape[:2]
    if min(h, w) < side:
        return None
    t, l = (h - side) // 2, (w - side) // 2
    return torch.from_numpy(np.ascontiguousarray(a[t:t + side, l:l + side])).permute(2, 0, 1)[None].float()


def one_run(name: str, source: str, side: int, width: int, lr: float, steps: int, sigma: float = 25.0,
            in_channels: int | None = None) -> dict | None:
    clean = clean_crop(source, side)
    if clean is None:
        return None
    obs = Denoise(sigma).corrupt(clean, seed=0)
    c = clean.shape[1]
    c_in = in_channels or c
    torch.manual_seed(0)
    net = build_network("nasdip-denoise", c_in, c, width)
    t = time.perf_counter()
    res = fit_dip(net, obs, DIPSettings(steps, lr=lr), seed=0, ground_truth=clean, probes=[EarlyStopping()],
                  quiet=True)
    secs = time.perf_counter() - t
    probe = next(iter(res.probes.values()))
    curve = res.psnr_curve or []
    row = {"image": name, "side": side, "width": width, "lr": lr, "steps": steps, "sigma": sigma,
           "code": in_channels or "image", "in_channels": c_in,
           "seconds": secs, "seconds_per_step": secs / max(1, res.iterations_run),
           "curve_every": EVERY, "psnr_curve": [round(curve[i], 3) for i in range(EVERY - 1, len(curve), EVERY)],
           "best_psnr": max(curve) if curve else None, "best_at": int(np.argmax(curve)) + 1 if curve else None,
           "stop_fired_at": probe.get("fired_at"), "stop_iteration": probe.get("iteration"),
           "stop_psnr": probe.get("psnr"),
           "noisy_psnr": float(-10 * torch.log10(((obs.y - clean) ** 2).mean()))}
    if references.available("bm3d"):
        t = time.perf_counter()
        ref = references.bm3d(obs.y, sigma)
        row["bm3d_psnr"] = float(-10 * torch.log10(((ref.clamp(0, 1) - clean) ** 2).mean()))
        row["bm3d_seconds"] = time.perf_counter() - t
    return row


def timing(sides: list[int], widths: list[int], steps: int = 20) -> list[dict]:
    """Seconds per DIP step (median of ``steps`` after 3 warm-up steps; all cores), and per megapixel."""
    rows = []
    for side in sides:
        clean = clean_crop("astronaut", side)
        assert clean is not None
        obs = Denoise(25.0).corrupt(clean, seed=0)
        for width in widths:
            times: list[float] = []
            net = build_network("nasdip-denoise", 3, 3, width)
            last = [time.perf_counter()]

            def tick(it: int, loss: float) -> None:
                now = time.perf_counter()
                times.append(now - last[0])
                last[0] = now

            fit_dip(net, obs, DIPSettings(steps + 3), seed=0, quiet=True, callback=tick)
            per_step = statistics.median(times[3:])
            rows.append({"side": side, "width": width, "seconds_per_step": per_step,
                         "seconds_per_megapixel_step": per_step / (side * side / 1e6), "threads": torch.get_num_threads()})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def restore_run(name: str, source: str, side: int, *, tile: int | None, final_width: int | None,
                iterations: int | None, sigma: float = 25.0) -> dict | None:
    """The real ``isnas_fast.restore`` (NAS-DIP's denoising genotype, the quick preset's stop and size
    rule unless ``final_width`` / ``iterations`` are given), whole or in tiles of ``tile`` px."""
    import isnas_fast
    clean = clean_crop(source, side)
    if clean is None:
        return None
    noisy = Denoise(sigma).corrupt(clean, seed=0).y
    t = time.perf_counter()
    r = isnas_fast.restore(noisy, "denoise", sigma=sigma, arch="nasdip-denoise", width=16, final_width=final_width,
                           iterations=iterations, tile=tile, ground_truth=clean, seed=0, quiet=True)
    rep = r.report()
    tiles = (rep.get("search") or {}).get("tiles")
    return {"image": name, "side": side, "tile": tile, "final_width": r.run.width, "iterations": iterations,
            "psnr": r.psnr, "seconds": time.perf_counter() - t,
            "stopped_at": tiles["stopped_at"] if tiles else r.dip.stopped_at}


def returned_at(row: dict, budget: int) -> float:
    """PSNR the default restore would return with ``budget`` steps (stop within it, else the smoothed output)."""
    fired = row["stop_fired_at"]
    if fired is not None and fired <= budget and row["stop_psnr"] is not None:
        return row["stop_psnr"]
    i = min(budget, row["steps"]) // row["curve_every"] - 1
    return row["psnr_curve"][max(0, i)]


def _key(row: dict) -> tuple:
    return (row["image"], row["side"], row["width"], row["lr"], row["steps"], row["code"])


def load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(rows: list[dict], budgets: list[int]) -> None:
    held = {n for n, _ in HELD_OUT}
    configs = sorted({(r["side"], r["width"], r["lr"], str(r["code"])) for r in rows})
    print("| side | set | width | lr | code | images | s/step | " + " | ".join(f"{b} steps" for b in budgets)
          + " | best along the run | stop fired (median step) | BM3D |")
    print("|---" * (10 + len(budgets)) + "|")
    for side, width, lr, code in configs:
        for part in ("tuning", "held_out"):
            rs = [r for r in rows if (r["side"], r["width"], r["lr"], str(r["code"])) == (side, width, lr, code)
                  and ((r["image"] in held) == (part == "held_out"))]
            if not rs:
                continue
            cells = []
            for b in budgets:
                ok = [r for r in rs if r["steps"] >= b]
                cells.append(f"{statistics.mean(returned_at(r, b) for r in ok):.2f}" if len(ok) == len(rs) else "")
            fired = [r["stop_fired_at"] for r in rs if r["stop_fired_at"] is not None]
            bm3d = [r["bm3d_psnr"] for r in rs if r.get("bm3d_psnr") is not None]
            print(f"| {side} | {part} | {width} | {lr:g} | {code} | {len(rs)} | "
                  f"{statistics.median(r['seconds_per_step'] for r in rs):.3f} | " + " | ".join(cells)
                  + f" | {statistics.mean(r['best_psnr'] for r in rs):.2f} (step {statistics.median(r['best_at'] for r in rs):.0f})"
                  + f" | {len(fired)}/{len(rs)}" + (f" ({statistics.median(fired):.0f})" if fired else "")
                  + f" | {statistics.mean(bm3d):.2f} |" if len(bm3d) == len(rs) else " | |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, nargs="+", default=[256])
    ap.add_argument("--width", type=int, nargs="+", default=[16])
    ap.add_argument("--lr", type=float, nargs="+", default=[0.01])
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--in-channels", type=int, help="channels of the input code (default: the image's)")
    ap.add_argument("--set", choices=sorted(SETS), nargs="+", default=["tuning"])
    ap.add_argument("--images", nargs="+", help="only these image names")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--summary", action="store_true", help="print the table of what --out holds and stop")
    ap.add_argument("--budgets", type=int, nargs="+", default=[600, 1200, 2400, 3600])
    ap.add_argument("--timing", action="store_true",
                    help="only time a DIP step at each --side and --width; writes results/size-timing-cpu.json")
    ap.add_argument("--restore", action="store_true",
                    help="run isnas_fast.restore (NAS-DIP genotype) per image and --tile (0: whole); "
                         "appends to results/size-restore-cpu.jsonl")
    ap.add_argument("--tile", type=int, nargs="+", default=[0])
    ap.add_argument("--final-width", type=int)
    ap.add_argument("--iterations", type=int)
    args = ap.parse_args()
    if args.restore:
        for name, source, side in _chosen(args):
            for tile in args.tile:
                row = restore_run(name, source, side, tile=tile or None, final_width=args.final_width,
                                  iterations=args.iterations)
                if row is not None:
                    _append(HERE / "results" / "size-restore-cpu.jsonl", row)
        return 0
    if args.timing:
        path = HERE / "results" / "size-timing-cpu.json"
        new = timing(args.side, args.width)
        keep = [r for r in (json.loads(path.read_text())["rows"] if path.exists() else [])
                if (r["side"], r["width"]) not in {(n["side"], n["width"]) for n in new}]
        path.write_text(json.dumps({"rows": keep + new}, indent=1) + "\n")
        return 0
    out = Path(args.out)
    if args.summary:
        summary(load(out), args.budgets)
        return 0
    done = {_key(r) for r in load(out)}
    for name, source, side in _chosen(args):
        for width in args.width:
            for lr in args.lr:
                if (name, side, width, lr, args.steps, args.in_channels or "image") in done:
                    continue
                row = one_run(name, source, side, width, lr, args.steps, in_channels=args.in_channels)
                if row is None:
                    print(f"{name}: smaller than {side} px, skipped", flush=True)
                    continue
                _append(out, row)
    return 0


def _chosen(args: argparse.Namespace):
    """(name, source, side) of every image of the chosen sets (``--images`` only) at every ``--side``."""
    for part in args.set:
        for name, source in SETS[part]:
            if not args.images or name in args.images:
                for side in args.side:
                    yield name, source, side


def _append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "psnr_curve"}), flush=True)

if __name__ == "__main__":
    sys.exit(main())
