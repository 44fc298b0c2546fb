"""Tiled restoration and the resource estimate, measured on the CPU.

``calibrate``: the constants of :mod:`isnas_fast.resources` -- peak resident
memory (VmHWM of a fresh process per point) and seconds per step of short DIP
runs (nasdip-denoise and dip-skip, widths 16-64, 1-4 members, 128-1024 px
sides, and a searched pick's skips under bicubic, bilinear and nearest
upsampling), fitted against the counts of :func:`profile_network`; held-out
rows (other sizes and cells) only report the fit's error.

``study``: (1) peak RSS against image size (256² to 2048², two steps, whole
up to 1024² and tiled where a 1200-step run would not fit a 3.5 GiB
working-memory budget), with the estimate beside it, and seconds per
megapixel; (2) tiled against whole on held-out 256² crops of scikit-image's
sample images (σ 25, nasdip-denoise at width 16, a fixed 300 steps -- no
early stop, so both sides run the same steps --, tiles of 160 px
overlapping by 64): PSNR, and PSNR of the band of pixels within 8 px of an
inner tile border against the rest; ``--task inpaint`` (50 % of the pixels
missing, nasdip-inpaint) and ``--task sr`` (×4, nasdip-sr) make the same
comparison for those tasks.  Results are saved after each part.
Every measured run is a fresh process.

    flock /tmp/isnas-cpu.lock .venv/bin/python bench/tiling_study.py calibrate
    flock /tmp/isnas-cpu.lock .venv/bin/python bench/tiling_study.py study

Results: ``bench/results/tiling-cpu.json`` (each command updates its own key).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "tiling-cpu.json"
ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30

# Held-out crops (top, left) of 256 px from scikit-image's bundled sample images.
CROPS = {"camera": (200, 150), "astronaut": (40, 180), "coffee": (120, 300), "brick": (100, 100)}
SIGMA = 25.0
TILE, OVERLAP, BAND = 160, 64, 8
STEPS = 300  # per DIP run of the quality comparison
BUDGET_BYTES = 3.5 * GIB  # working memory the tiled size sweep may use: 4 GiB resident with the process


def _vm(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def worker(spec: dict) -> dict:
    """One measured run in this (fresh) process; prints a JSON line."""
    from isnas_fast.device import seeded
    from isnas_fast.dip import DIPSettings, EarlyStopping, fit_dip_group
    from isnas_fast.network import build_network
    from isnas_fast.search import preset
    from isnas_fast.tasks import Denoise
    from isnas_fast.tiling import restore_in_tiles

    h, w = spec["size"]
    clean = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    obs = Denoise(SIGMA).corrupt(clean, 0)
    es = EarlyStopping() if spec.get("es") else None
    times: list[float] = []
    if spec["kind"] == "group":
        k = spec["members"]
        nets = []
        for i in range(k):
            with seeded(i):
                nets.append(build_network(spec["arch"], spec["in_channels"], 3, spec["width"], task="denoise"))
        base = _vm("VmRSS")
        fit_dip_group(nets, obs, DIPSettings(spec["steps"]), seeds=list(range(k)), early_stopping=es, quiet=True,
                      callback=lambda it, loss: times.append(time.perf_counter()))
    else:  # a tiled restore, as the API runs it
        settings = preset("quick", width=spec["width"], final_iterations=spec["steps"])
        if not spec.get("es"):
            settings = replace(settings, early_stopping=None)
        base = _vm("VmRSS")
        t0 = time.perf_counter()
        restore_in_tiles(obs, spec["arch"], settings, tile=spec["tile"], overlap=spec["overlap"],
                         in_channels=spec["in_channels"], group_size=spec["group_size"], quiet=True)
        seconds = time.perf_counter() - t0
        # the whole restore (networks built, every step, the blend) over its steps
        return {"base_rss": base, "peak_rss": _vm("VmHWM"), "seconds": seconds,
                "seconds_per_step": seconds / spec["steps"], "steps_timed": spec["steps"]}
    # the median of the steps after the first two (which set up): robust to other processes' bursts
    gaps = sorted(b - a for a, b in zip(times[1:], times[2:]))
    return {"base_rss": base, "peak_rss": _vm("VmHWM"), "seconds_per_step": gaps[len(gaps) // 2],
            "steps_timed": len(gaps)}


#: Candidate sizes of :data:`isnas_fast.resources.CPU_CACHE_BYTES`; the fit keeps the one with the least error.
CACHE_CANDIDATES = [2**20 * m for m in (4, 8, 12, 16, 24, 32, 48)]
FEATURES = ("members", "flops", "touched", "spilled", "tap_bytes")


def _time_fit(rows: list[dict], cache: int) -> tuple[list[float], float]:
    """Non-negative least squares of seconds per step on the features (relative error): the
    coefficients and the fit's median absolute relative error."""
    import numpy as np
    from scipy.optimize import nnls

    a = np.array([[r["features"][str(cache)][f] for f in FEATURES] for r in rows])
    b = np.array([r["seconds_per_step"] for r in rows])
    scale = a.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(a / scale / b[:, None], np.ones_like(b))
    coef = coef / scale
    return [float(c) for c in coef], float(np.median(np.abs(a @ coef / b - 1)))


def fit_rows(rows: list[dict]) -> dict:
    """The constants of isnas_fast.resources from the calibration rows marked ``fit`` (adds each
    row's fitted values, held-out rows included)."""
    import numpy as np

    train = [r for r in rows if r.get("fit", True)]
    # peak - monitor - state = base + factor * saved, least squares over the cross-scale U-Nets (every
    # searched network); dip-skip's factor is the largest its rows imply with that base
    unet = [r for r in train if r["arch"] != "dip-skip"]
    a = np.array([[1.0, r["saved_bytes"]] for r in unet])
    b = np.array([r["peak_rss"] - r["monitor_bytes"] - r["state_bytes"] for r in unet])
    (base, factor), *_ = np.linalg.lstsq(a, b, rcond=None)
    skip = max((r["peak_rss"] - base - r["monitor_bytes"] - r["state_bytes"]) / r["saved_bytes"]
               for r in train if r["arch"] == "dip-skip")
    # seconds = per_member * K + flops / rate + per_byte * touched + per_spilled * spilled + per_tap * taps,
    # the cache size the one of CACHE_CANDIDATES that fits best
    cache, (coef, _) = min(((c, _time_fit(train, c)) for c in CACHE_CANDIDATES), key=lambda t: t[1][1])
    for r in rows:
        f = skip if r["arch"] == "dip-skip" else factor
        r["peak_fit"] = float(base + f * r["saved_bytes"] + r["monitor_bytes"] + r["state_bytes"])
        r["seconds_fit"] = float(sum(c * r["features"][str(cache)][k] for c, k in zip(coef, FEATURES)))
    per_member, per_flop, per_byte, per_spilled, per_tap = coef
    return {"base_bytes": float(base), "saved_factor": float(factor), "saved_factor_dip_skip": float(skip),
            "seconds_per_member": per_member, "flops_per_second": 1 / per_flop if per_flop else None,
            "seconds_per_touched_byte": per_byte, "seconds_per_spilled_byte": per_spilled,
            "seconds_per_tap_byte": per_tap, "cache_bytes": cache}


#: The pick of a 512 px Grace Hopper denoise: its skips under three upsampling cells (each followed by a
#: 5x5 convolution) -- full-size convolutions after an interpolation, which NAS-DIP's genotype has not.
PICK_SKIPS = "0100001111001111111000000"
PICK = {"bicubic": f"71,{PICK_SKIPS}", "bilinear": f"8,{PICK_SKIPS}", "nearest": f"134,{PICK_SKIPS}"}


def calibrate_grid() -> list[tuple]:
    """(arch, width, side_h, side_w, members, steps, fit): the rows the constants are fitted on
    (``fit``) and held-out rows, other sizes and networks, that only report the fit's error."""
    return [
        ("nasdip-denoise", 16, 128, 128, 1, 10, True), ("nasdip-denoise", 16, 256, 256, 1, 8, True),
        ("nasdip-denoise", 16, 512, 512, 1, 6, True), ("nasdip-denoise", 16, 1024, 1024, 1, 5, True),
        ("nasdip-denoise", 16, 256, 256, 4, 6, True), ("nasdip-denoise", 16, 512, 512, 2, 5, True),
        ("nasdip-denoise", 32, 256, 256, 1, 6, True), ("nasdip-denoise", 32, 512, 512, 1, 6, True),
        ("nasdip-denoise", 64, 256, 256, 1, 6, True), ("dip-skip", 128, 256, 256, 1, 6, True),
        ("dip-skip", 128, 512, 512, 1, 5, True),
        (PICK["bicubic"], 32, 256, 256, 1, 6, True), (PICK["bicubic"], 32, 512, 512, 1, 6, True),
        (PICK["nearest"], 32, 512, 512, 1, 6, True), (PICK["bilinear"], 32, 256, 256, 1, 6, True),
        # held out
        (PICK["bilinear"], 32, 512, 512, 1, 6, False), ("nasdip-denoise", 32, 384, 384, 1, 6, False),
        ("nasdip-denoise", 32, 768, 768, 1, 5, False), ("dip-skip", 128, 384, 384, 1, 6, False),
        (PICK["bicubic"], 32, 384, 384, 1, 6, False), ("nasdip-denoise", 16, 768, 768, 1, 5, False),
        (f"296,{PICK_SKIPS}", 32, 512, 512, 1, 5, False),
    ]


def calibrate(args) -> dict:
    from isnas_fast.resources import _averaging_bytes, _monitor_bytes_per_pixel, profile_network, step_features
    from isnas_fast.dip import EarlyStopping

    rows = []
    for arch, width, h, w, k, steps, fit in calibrate_grid():
        prof = profile_network(arch, width, 32, 3, "denoise")
        m = _run("worker", {"kind": "group", "arch": arch, "width": width, "in_channels": 32, "size": [h, w],
                         "members": k, "steps": steps, "es": True})
        px = h * w
        row = {"arch": arch, "width": width, "size": [h, w], "members": k, "steps": steps, "fit": fit,
               "saved_bytes": k * prof.saved_bytes(px), "flops": k * prof.flops_per_pixel * px,
               "features": {str(c): step_features(prof, [px] * k, c) for c in CACHE_CANDIDATES},
               "monitor_bytes": k * (px * _monitor_bytes_per_pixel(3, steps, EarlyStopping())
                                     + _averaging_bytes(prof, px, steps)),
               "state_bytes": 16 * prof.parameters * k, **m}
        rows.append(row)
        print(f"{arch} w{width} {w}x{h} x{k}: peak {m['peak_rss'] / 2**20:.0f} MiB, "
              f"{m['seconds_per_step']:.3f} s/step", flush=True)
    fit = fit_rows(rows)
    print(json.dumps(fit), flush=True)
    for r in rows:
        print(f"{'fit ' if r['fit'] else 'held'} {r['arch']:<30} w{r['width']:<3} {r['size'][1]:>4}px x{r['members']}: "
              f"{r['seconds_per_step']:.3f} s/step, model {r['seconds_fit']:.3f} "
              f"({r['seconds_fit'] / r['seconds_per_step']:.2f}x)", flush=True)
    return {"fit": fit, "rows": rows}


def _crop(name: str) -> torch.Tensor:
    import numpy as np
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    top, left = CROPS[name]
    x = torch.from_numpy(np.ascontiguousarray(img[top:top + 256, left:left + 256, :3])).permute(2, 0, 1)
    return (x.float() / 255.0)[None]


def _border_band(plan, band: int) -> torch.Tensor:
    """(H, W) bool: pixels within ``band`` px of an inner tile border (a tile edge not on the image's edge)."""
    mask = torch.zeros(plan.height, plan.width, dtype=torch.bool)
    for t in plan.tops[1:]:
        mask[max(0, t - band):t + band, :] = True
    for t in plan.tops[:-1]:
        e = t + plan.tile_height
        mask[max(0, e - band):e + band, :] = True
    for l in plan.lefts[1:]:
        mask[:, max(0, l - band):l + band] = True
    for l in plan.lefts[:-1]:
        e = l + plan.tile_width
        mask[:, max(0, e - band):e + band] = True
    return mask


def _masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean(1)[0][mask].mean())
    return 10 * float(torch.log10(torch.tensor(1.0 / mse)))


#: Per task: the degradation of the quality comparison and NAS-DIP's genotype for it.
TASKS = {"denoise": ("Denoise", SIGMA, "nasdip-denoise"), "inpaint": ("Inpaint", 50.0, "nasdip-inpaint"),
         "sr": ("SuperResolve", 4, "nasdip-sr")}


def quality_worker(spec: dict) -> dict:
    from isnas_fast.quality import psnr
    from isnas_fast.search import preset, train_final
    from isnas_fast import tasks
    from isnas_fast.tiling import plan_tiles, restore_in_tiles

    clean = _crop(spec["image"])
    physics, level, arch = TASKS[spec.get("task", "denoise")]
    obs = getattr(tasks, physics)(level).corrupt(clean, 0)
    settings = replace(preset("quick"), final_iterations=STEPS, early_stopping=None)
    t = time.perf_counter()
    if spec["mode"] == "whole":
        run = train_final(arch, obs, settings, in_channels=32, seed=0, quiet=True)
        out, steps = run.dip.output, [run.dip.iterations_run]
    else:
        out, runs = restore_in_tiles(obs, arch, settings, tile=TILE, overlap=OVERLAP, seed=0,
                                     in_channels=32, quiet=True)
        steps = [r.dip.iterations_run for r in runs]
    seconds = time.perf_counter() - t
    band = _border_band(plan_tiles((256, 256), TILE, OVERLAP), BAND)
    return {"psnr": float(psnr(out, clean)[0]), "psnr_band": _masked_psnr(out, clean, band),
            "psnr_interior": _masked_psnr(out, clean, ~band), "steps": steps, "seconds": seconds,
            "peak_rss": _vm("VmHWM")}


def _run(kind: str, spec: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, __file__, kind, json.dumps(spec)], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def study(args) -> dict:
    from isnas_fast.resources import estimate_run, plan_resources, profile_network
    from isnas_fast.search import preset

    res: dict = {"settings": {"sigma": SIGMA, "arch": "nasdip-denoise", "width": 16, "in_channels": 32,
                              "steps": STEPS, "early_stopping": None,
                              "tile": TILE, "overlap": OVERLAP, "band_px": BAND, "crops": CROPS,
                              "threads": torch.get_num_threads()}}
    prof = profile_network("nasdip-denoise", 16, 32, 3, "denoise")
    es = preset("quick").early_stopping
    sizes = []
    for side in args.sides if "sizes" in args.parts else ():
        px = side * side
        row = {"side": side}
        if side <= args.max_whole:
            m = _run("worker", {"kind": "group", "arch": "nasdip-denoise", "width": 16, "in_channels": 32,
                                "size": [side, side], "members": 1, "steps": 2, "es": True})
            est = estimate_run(prof, [px], "cpu", channels=3, iterations=2, early_stopping=es)
            row["whole"] = {**m, "estimate_peak": est.peak_bytes, "seconds_per_megapixel":
                            m["seconds_per_step"] / (px / 1e6)}
        plan = plan_resources((side, side), "nasdip-denoise", width=16, in_channels=32, channels=3,
                              task="denoise", iterations=1200, device="cpu", early_stopping=es,
                              memory_budget=BUDGET_BYTES)
        if plan.plan is not None:
            m = _run("worker", {"kind": "tiled", "arch": "nasdip-denoise", "width": 16, "in_channels": 32,
                                "size": [side, side], "steps": 2, "es": True, "tile": plan.tile,
                                "overlap": plan.overlap, "group_size": plan.group_size})
            est2 = estimate_run(prof, [plan.plan.tile_pixels] * plan.group_size, "cpu", channels=3, iterations=2,
                                early_stopping=es)
            row["tiled"] = {**m, "tile": plan.tile, "overlap": plan.overlap, "group_size": plan.group_size,
                            "tiles": len(plan.plan), "estimate_peak_2_steps": est2.peak_bytes,
                            "estimate_peak_1200_steps": plan.estimate.peak_bytes,
                            "seconds_per_megapixel": m["seconds_per_step"] / (px / 1e6)}
        whole_est = estimate_run(prof, [px], "cpu", channels=3, iterations=1200, early_stopping=es)
        row["whole_estimate_1200_steps"] = {"peak": whole_est.peak_bytes,
                                            "seconds_per_step": whole_est.seconds_per_step}
        sizes.append(row)
        print(json.dumps(row), flush=True)
    if "sizes" in args.parts:
        res["sizes"] = sizes
        _save("study", res)
    quality = []
    for name in args.images if "quality" in args.parts else ():
        row = {"image": name, "task": args.task}
        for mode in ("whole", "tiled"):
            row[mode] = _run("quality", {"image": name, "mode": mode, "task": args.task})
        quality.append(row)
        print(f"{name} ({args.task}): whole {row['whole']['psnr']:.2f} dB ({row['whole']['seconds']:.0f} s), "
              f"tiled {row['tiled']['psnr']:.2f} dB (band {row['tiled']['psnr_band']:.2f}, interior "
              f"{row['tiled']['psnr_interior']:.2f}; {row['tiled']['seconds']:.0f} s)", flush=True)
    if "quality" in args.parts and args.task == "denoise":
        res["quality"] = quality
        _save("study", res)
    elif "quality" in args.parts:  # the other tasks' comparisons under their own key, the denoise study kept
        res = {"settings": {**res["settings"], "task": args.task,
                            "physics": f"{TASKS[args.task][0]}({TASKS[args.task][1]})", "arch": TASKS[args.task][2]},
               "quality": quality}
        _save(f"quality_{args.task}", res)

    return res


def _save(key: str, value: dict) -> None:
    """Write ``value``'s entries under ``key`` of the results file (atomically): the key's
    other entries (a study of some parts keeps the other parts') and other keys are kept."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = {**results.get(key, {}), **value}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(RESULTS)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("calibrate")
    s = sub.add_parser("study")
    s.add_argument("--images", nargs="+", default=["camera", "astronaut"])
    s.add_argument("--sides", nargs="+", type=int, default=[256, 512, 1024, 2048])
    s.add_argument("--max-whole", type=int, default=1024, help="largest side also run whole (RAM)")
    s.add_argument("--parts", default="sizes,quality", help="which parts to run: sizes, quality")
    s.add_argument("--task", choices=sorted(TASKS), default="denoise",
                   help="the quality comparison's task (inpaint: 50%% of pixels missing; sr: x4)")
    for kind in ("worker", "quality"):
        w = sub.add_parser(kind)
        w.add_argument("spec")
    args = p.parse_args(argv)
    if args.cmd == "worker":
        print(json.dumps(worker(json.loads(args.spec))))
        return 0
    if args.cmd == "quality":
        print(json.dumps(quality_worker(json.loads(args.spec))))
        return 0
    t = time.perf_counter()
    out = calibrate(args) if args.cmd == "calibrate" else study(args)
    key = args.cmd if args.cmd == "calibrate" or args.task == "denoise" else f"quality_{args.task}"
    out["seconds"] = time.perf_counter() - t
    from _common import device_label  # bench/ is this script's folder

    out["device"] = device_label(torch.device("cpu"))
    _save(key, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
