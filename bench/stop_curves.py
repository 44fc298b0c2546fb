"""Curves of the discrepancy stop, kept per step so that any stop rule can be read off them.

Per crop and sigma (``noise_estimation.py``'s crops, noisy at each sigma with
the seed sigma and quantised to 8 bits), NAS-DIP's denoising architecture at
width 16 runs the quick preset's 1200 steps, seed 0, without stopping.  At
every step ``t`` from the discrepancy stop's first check on, the window mean
``W(t)`` it returns (the last ``min(100, t // 2)`` raw outputs) is kept as

* ``residual``: ``mean((W(t) - y)^2)``;
* ``psnr``: PSNR of ``W(t)`` (clamped to [0, 1]) against the clean crop;
* ``target``: the clipped noise variance around ``W(t)``
  (:class:`~isnas_fast.dip.early_stopping.ClippedNoiseTable`) for the noise
  levels ``sigma_true * f`` on the grid ``FACTORS`` and for the estimate,
  wherever the residual is within reach of them;
* ``whiteness``: :func:`lag1` of ``W(t) - y``, as a column (caches written
  with two more statistics after it read the same).

One ``.npz`` per run under ``--cache`` (resumable).  ``rules`` reads the
cache and prints, for each stop rule, the restore with sigma estimated
against the restore told the true sigma (what each returns is read off the
curves: the discrepancy stop's first window whose residual reaches the
target, or the least residual when none does, as the detector returns), and
writes the per-run outcomes to ``--out``.  The rules:

* ``told``: the discrepancy stop told the true sigma (the reference);
* ``auto``: told the estimate (:func:`isnas_fast.noise.pca_sigma`), what
  ``--sigma auto`` runs;
* ``cliff``: told the estimate, but it also fires within ``CLIFF_MARGIN``
  of the target once the residual's log-log slope over the last factor
  ``CLIFF_SPAN`` of steps has grown ``CLIFF_RISE`` times above its least
  so far: on flat crops the residual rests near the noise level while the
  image is fitted, then falls steeply once the noise is; an estimate a few
  per cent low waits for that fall's end.  Its three constants are the best
  of a 60-point grid on the tuning curves;
* ``bracket``: told the estimate, a stop that moves less with sigma: with
  ``t_b`` the first step whose residual comes within ``BRACKET[0]`` of the
  target (where the residual still falls steeply), the discrepancy stop
  fires from ``BRACKET[1] * t_b`` on and at ``BRACKET[2] * t_b`` at the
  latest; the plain stop when the residual is that near at the first check
  already (``t_b`` unknown).  Its constants: the best of a grid on the
  tuning curves (``rules --grid``).  ``bracket_told``: the same told the
  true sigma;
* ``white``: reads no sigma: the first window whose residual's lag-1
  autocorrelation falls to ``WHITE`` (the residual whiteness principle: left
  image structure correlates neighbouring residuals, fitted low-frequency
  noise anti-correlates them);
* ``near_white``: told the estimate; within ``1 +- NEAR_WHITE[1]`` of the target
  only a white residual (lag-1 autocorrelation at most ``NEAR_WHITE[0]``) stops
  the run, below that band any (built as a detector and tested on the ``fresh``
  crops before it could become ``--sigma auto``'s stop from 128 px on);
* ``oracle``: the best window mean along the run (ground truth).

    .venv/bin/python bench/stop_curves.py run --set tuning|held_out|fresh|fresh2|fresh3|fresh4|fresh5 [--size 128] [--sigmas 5,10] [--images N]
    .venv/bin/python bench/stop_curves.py rules --cache DIR [--size 128] [--grid] --out results/stop-curves-...json
    .venv/bin/python bench/stop_curves.py run --set fresh5 --size 128 --only colorwheel,logo --cache DIR2
    .venv/bin/python bench/stop_curves.py rules --cache DIR2 --size 128 --merge results/X.json --out results/X.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout_stop import crops as _crops  # noqa: E402
from noise_estimation import SIGMAS, crop, noisy_copy  # noqa: E402

from isnas_fast.dip import fit_dip_group  # noqa: E402
from isnas_fast.dip.early_stopping import (OBSERVED_BOX, OBSERVED_MARGIN, ClippedNoiseTable,  # noqa: E402
                                           local_mean_noise_variance)
from isnas_fast.dip.monitor import probe_name  # noqa: E402
from isnas_fast.network import build_network, resolve_architecture  # noqa: E402
from isnas_fast.noise import pca_sigma  # noqa: E402
from isnas_fast.quality import psnr  # noqa: E402
from isnas_fast.search import preset  # noqa: E402
from isnas_fast.search.candidates import genotype_seed  # noqa: E402
from isnas_fast.tasks import Denoise  # noqa: E402

ARCH = "nasdip-denoise"
CLIFF_MARGIN, CLIFF_RISE, CLIFF_SPAN = 0.20, 2.0, 1.2
BRACKET = (0.2, 1.5, 3.0)  # level, after, until: chosen on the tuning runs (``rules --grid``)
WHITE = -0.02  # the lag-1 autocorrelation the ``white`` rule stops at: chosen on the tuning runs
NEAR_WHITE = (-0.02, 0.15)  # the ``near_white`` rule's lag-1 level and band: chosen on the held-out 128 px runs
FACTORS = np.round(np.arange(0.70, 1.401, 0.02), 2)


#: (source, crop top fraction, crop left fraction) of 128 px crops fixed before any run on them:
#: sources in none of noise_estimation.py's lists, and new regions of four of its tuning sources
#: (retina, gravel, page, moon), none of them in the 128 px tuning runs.
FRESH = [("mpl:grace_hopper.jpg", 0.1, 0.4), ("mpl:grace_hopper.jpg", 0.95, 0.1),
         ("mpl:Minduka_Present_Blue_Pack.png", 0.0, 0.0), ("mpl:s1045.ima.gz", 0.5, 0.5),
         ("mpl:jacksboro_fault_dem.npz", 0.3, 0.6), ("stereo_motorcycle", 0.3, 0.3),
         ("stereo_motorcycle", 0.8, 0.85), ("checkerboard", 0.4, 0.4), ("retina", 0.75, 0.55),
         ("gravel", 0.9, 0.05), ("page", 0.5, 0.9), ("moon", 0.85, 0.15)]

#: A second set of 128 px crops fixed before any run on them, to test what was designed after the
#: ``fresh`` runs had been read: two new sources (PyWavelets' ``aero`` and ``ascent``), matplotlib's
#: ``logo2.png``, and new regions of five sources seen only in other crops.
FRESH2 = [("pywt:aero", 0.3, 0.6), ("pywt:aero", 0.8, 0.1), ("pywt:ascent", 0.5, 0.2),
          ("pywt:ascent", 0.1, 0.8), ("mpl:logo2.png", 0.5, 0.3), ("mpl:grace_hopper.jpg", 0.5, 0.8),
          ("mpl:s1045.ima.gz", 0.1, 0.2), ("mpl:jacksboro_fault_dem.npz", 0.8, 0.1),
          ("hubble_deep_field", 0.9, 0.9), ("immunohistochemistry", 0.05, 0.9)]

#: A third set of 128 px crops, fixed before a per-channel clipping correction of the estimator
#: was designed (mostly colour, whose channels can sit at different levels): new regions of
#: sources seen only in other crops.
FRESH3 = [("paper:f16_512_rgb", 0.1, 0.1), ("paper:woman_rgb", 0.8, 0.7), ("paper:monar_256", 0.9, 0.05),
          ("coffee", 0.9, 0.5), ("rocket", 0.1, 0.9), ("chelsea", 0.05, 0.05), ("astronaut", 0.4, 0.9),
          ("immunohistochemistry", 0.6, 0.4), ("pywt:ascent", 0.9, 0.5), ("mpl:s1045.ima.gz", 0.8, 0.8)]


#: A confirmation set, fixed with the estimator as it is: twelve distinct sources, none of them
#: in any tuning set (the estimator's or the stop's), each at a crop position not used before.
FRESH4 = [("hubble_deep_field", 0.55, 0.3), ("paper:f16_512_rgb", 0.9, 0.9), ("paper:monar_256", 0.0, 1.0),
          ("paper:woman_rgb", 0.05, 0.95), ("mpl:grace_hopper.jpg", 0.9, 0.55),
          ("mpl:Minduka_Present_Blue_Pack.png", 0.7, 0.6), ("mpl:s1045.ima.gz", 0.0, 0.9),
          ("mpl:jacksboro_fault_dem.npz", 0.0, 0.0), ("stereo_motorcycle", 0.1, 0.9), ("pywt:aero", 0.05, 0.05),
          ("pywt:ascent", 0.3, 0.5), ("cell", 0.1, 0.1)]


#: A fifth set, fixed before a correction of the eigenvalues' spread for small starting sets was
#: tested on images: twelve sources none of which is in any tuning set, at crop positions not used
#: before (``cell`` at sigma 10 in ``fresh4`` showed the failure it corrects).
FRESH5 = [("hubble_deep_field", 0.05, 0.05), ("paper:f16_512_rgb", 0.1, 0.9), ("paper:woman_rgb", 0.9, 0.1),
          ("mpl:grace_hopper.jpg", 0.4, 0.05), ("mpl:Minduka_Present_Blue_Pack.png", 0.2, 0.9),
          ("stereo_motorcycle", 0.9, 0.4), ("pywt:aero", 0.95, 0.7), ("pywt:ascent", 0.7, 0.95),
          ("cell", 0.9, 0.8), ("mpl:jacksboro_fault_dem.npz", 1.0, 1.0), ("colorwheel", 0.1, 0.8), ("logo", 0.8, 0.8)]


FRESH_SETS = {"fresh": FRESH, "fresh2": FRESH2, "fresh3": FRESH3, "fresh4": FRESH4, "fresh5": FRESH5}


def crops(which: str) -> list[tuple[str, float, float]]:
    """The crops of a set: ``tuning`` and ``held_out`` as heldout_stop.py's, or one of :data:`FRESH_SETS`."""
    return list(FRESH_SETS[which]) if which in FRESH_SETS else _crops(which)


def noisy_crop(name: str, top: float, left: float, sigma: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean crop and its noisy copy at ``sigma`` (seeded with sigma, 8-bit quantised)."""
    clean = crop(name, top, left, size)
    return clean, noisy_copy(clean, sigma)


def lag1(e: torch.Tensor) -> float:
    """The normalised lag-1 autocorrelation of a residual ``e`` (1, C, H, W), the mean of the
    horizontal and vertical ones: 0 for white noise, above 0 where image structure is left
    in it, below 0 where the network has fitted the noise's low frequencies."""
    e = e - e.mean(dim=(-2, -1), keepdim=True)
    pairs = (e[..., 1:, :] * e[..., :-1, :]).sum() + (e[..., :, 1:] * e[..., :, :-1]).sum()
    return float(pairs) / (2 * float(e.square().sum()))


def one(name: str, top: float, left: float, sigma: int, path: Path, size: int = 64) -> None:
    clean, noisy = noisy_crop(name, top, left, sigma, size)
    estimate = pca_sigma(noisy).sigma
    obs = Denoise(sigma).observe(noisy)
    q = preset("quick")
    dip = q.final_run("denoise").dip
    told = q.early_stopping
    seed = genotype_seed(0, resolve_architecture(ARCH))
    torch.manual_seed(seed)
    net = build_network(ARCH, 32, int(clean.shape[1]), width=16, task="denoise")
    steps = list(range(1, dip.iterations + 1))
    run = fit_dip_group([net], obs, dip, seeds=[seed], ground_truth=clean, quiet=True, probes=[told],
                        served=False, compile=False, snapshots=steps)[0]
    raw = run.raw_snapshots
    start = max(2, told.window // 2)
    y = noisy.double()
    sigmas = [float(sigma) * f for f in FACTORS] + [estimate]
    tables = [ClippedNoiseTable(s / 255.0) for s in sigmas]
    reach = (max(sigmas) / 255.0) ** 2
    total = torch.zeros_like(y)
    res, q_, white, tgt = [], [], [], np.full((len(steps) - start + 1, len(sigmas)), np.nan)
    lo = 1  # the window holds raw outputs lo..t
    for t in steps:  # the window mean of the last min(window, t // 2) raw outputs
        total += raw[t].double()
        w = max(1, min(told.window, t // 2))
        while t - lo + 1 > w:
            total -= raw[lo].double()
            lo += 1
        if t < start:
            continue
        mean = total / w
        r = float((mean - y).square().mean())
        res.append(r)
        q_.append(float(psnr(mean.clamp(0, 1).float(), clean)[0]))
        white.append([lag1(mean - y)])
        if r <= reach and (t - start) % 5 == 0:  # the target moves slowly: every 5 steps, interpolated
            m = mean.clamp(0, 1)
            tgt[t - start] = [float(tb.variance_at_mean(m).mean()) for tb in tables]
    for j in range(tgt.shape[1]):
        col, known = tgt[:, j], ~np.isnan(tgt[:, j])
        if known.sum() >= 2:
            idx = np.arange(len(col))
            first = idx[known][0]
            col[first:] = np.interp(idx[first:], idx[known], col[known])
    probe = run.probes[probe_name(told)]
    np.savez_compressed(path, image=name, top=top, left=left, sigma=sigma, estimate=estimate, start=start, factors=FACTORS,
                        residual=np.array(res), psnr=np.array(q_), target=tgt, whiteness=np.array(white),
                        noisy_psnr=float(psnr(noisy, clean)[0]),
                        probe=np.array([probe["iteration"], probe["psnr"]], dtype=float))
    print(json.dumps({"image": name, "sigma": sigma, "estimate": round(estimate, 3), "told": probe}), flush=True)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    # images smaller than the crop are left out
    todo = [c for c in crops(args.set) if min(crop(*c, size=args.size).shape[-2:]) >= args.size][: args.images]
    if args.only:
        todo = [c for c in todo if c[0] in args.only.split(",")]
    jobs = [(c, int(s)) for c in todo for s in args.sigmas.split(",")]
    names = [n for n, _, _ in todo]
    for (name, top, left), s in (reversed(jobs) if args.reverse else jobs):
        tag = name.replace(":", "_") + (f"@{top:g}-{left:g}" if names.count(name) > 1 else "")  # two crops of one source
        path = cache / f"{args.set}--{tag}--{s}.npz"
        if not path.exists():
            one(name, top, left, s, path, args.size)


def _target(z: dict, sigma: float) -> np.ndarray:
    """The clipped noise variance around each step's window mean at ``sigma`` (interpolated
    between the kept grid's columns; -1 where the residual was out of reach), and, where the
    noisy crop is known (``noisy``, set by ``rules --size``), never above the detector's reading
    off the noisy image (:func:`~isnas_fast.dip.early_stopping.local_mean_noise_variance`)."""
    f = float(np.clip(sigma / float(z["sigma"]), z["factors"][0], z["factors"][-1]))
    grid, cols = z["factors"], z["target"][:, :-1]
    j = int(np.clip(np.searchsorted(grid, f), 1, len(grid) - 1))
    a = (f - grid[j - 1]) / (grid[j] - grid[j - 1])
    target = np.nan_to_num(cols[:, j - 1] * (1 - a) + cols[:, j] * a, nan=-1.0)
    if "noisy" in z:
        if ("read", sigma) not in z:  # the rules ask again for the same sigma
            z["read", sigma] = local_mean_noise_variance(z["noisy"], ClippedNoiseTable(sigma / 255.0), OBSERVED_BOX)
        read = z["read", sigma]
        target = np.where(target > 0, np.minimum(target, (1 + OBSERVED_MARGIN) * read), target)
    return target


def discrepancy(z: dict, sigma: float) -> int:
    """Index (into the curves) of the window the discrepancy stop told ``sigma`` returns."""
    hit = np.flatnonzero(z["residual"] <= _target(z, sigma))
    return int(hit[0]) if hit.size else int(np.argmin(z["residual"]))


def cliff(z: dict, sigma: float) -> int:
    """Index of the window the ``cliff`` rule returns (see the module's docstring)."""
    r, start, target = z["residual"], int(z["start"]), _target(z, sigma)
    least = np.inf
    for i in range(len(r)):
        if r[i] <= target[i]:
            return i
        t = i + start
        if t / CLIFF_SPAN < start:
            continue
        slope = (np.log(r[int(t / CLIFF_SPAN) - start]) - np.log(r[i])) / np.log(CLIFF_SPAN)
        if r[i] <= target[i] * (1 + CLIFF_MARGIN) and least < np.inf and slope >= CLIFF_RISE * max(least, 1e-4):
            return i
        least = min(least, slope)
    return int(np.argmin(r))


def white(z: dict, theta: float) -> int:
    """Index of the first window whose residual's lag-1 autocorrelation falls to ``theta``;
    reads no sigma."""
    hit = np.flatnonzero(z["whiteness"][:, 0] <= theta)
    return int(hit[0]) if hit.size else len(z["residual"]) - 1


def near_white(z: dict, sigma: float, theta: float = NEAR_WHITE[0], near: float = NEAR_WHITE[1]) -> int:
    """Index of the window the ``near_white`` rule returns, told ``sigma``: the first whose
    residual is within ``1 + near`` of the target and either white (lag-1 autocorrelation at
    most ``theta``) or below ``1 - near`` of it; the least residual when none is."""
    r, target, lag1 = z["residual"], _target(z, sigma), z["whiteness"][:, 0]
    hit = np.flatnonzero((target > 0) & (r <= target * (1 + near)) & ((lag1 <= theta) | (r <= target * (1 - near))))
    return int(hit[0]) if hit.size else int(np.argmin(r))


def bracket(z: dict, sigma: float, level: float = BRACKET[0], after: float = BRACKET[1],
            until: float = BRACKET[2]) -> int:
    """Index of the window the ``bracket`` rule returns, told ``sigma``: with ``t_b`` the first
    step whose residual reaches ``1 + level`` times the target, the discrepancy stop fires
    from step ``after * t_b`` on, and at ``until * t_b`` at the latest; the plain stop when
    the residual is that near at the first check already."""
    r, target, start = z["residual"], _target(z, sigma), int(z["start"])
    near = np.flatnonzero(r <= target * (1 + level))
    if not near.size:
        return int(np.argmin(r))
    if near[0] == 0:  # near the target at the first check already: t_b unknown, the plain stop
        return discrepancy(z, sigma)
    t_b = int(near[0]) + start
    first, last = math.ceil(after * t_b) - start, math.floor(until * t_b) - start
    for i in range(max(first, 0), len(r)):
        if r[i] <= target[i] or i >= last:
            return i
    return int(np.argmin(r))


def grid(runs: list[dict]) -> None:
    """Print the bracket rule's outcome told the estimate for a grid of its constants (the
    choice of :data:`BRACKET` on the tuning runs)."""
    told = [discrepancy(z, float(z["sigma"])) for z in runs]
    rows = []
    for level, after, until in itertools.product((0.05, 0.1, 0.2, 0.3, 0.5), (1.0, 1.2, 1.3, 1.5, 1.7, 2.0),
                                                 (1.5, 2.0, 3.0, 4.0, 99.0)):
        if until < after:
            continue
        d = np.array([z["psnr"][bracket(z, float(z["estimate"]), level, after, until)] - z["psnr"][i]
                      for z, i in zip(runs, told)])
        rows.append((float(np.mean(d >= -0.3)), -int(np.sum(d < -1)), float(d.mean()), float(d.min()),
                     f"level {level}, after {after}, until {until}"))
    rows.sort(reverse=True)
    for ok, bad, mean, worst, name in rows[:15]:
        print(f"  {name:34s} within 0.3 dB or better {ok:.0%}, worse than 1 dB {-bad}, mean {mean:+.2f}, "
              f"worst {worst:+.2f}")


def _same_run(a: dict, b: dict) -> bool:
    """Whether two rows of a results file are of one run: set, source and sigma, and the crop
    where both name it (older files name it only for a source cropped twice in one set)."""
    return ((a["set"], a["image"], a["sigma"]) == (b["set"], b["image"], b["sigma"])
            and ("crop" not in a or "crop" not in b or a["crop"] == b["crop"]))


def rules(args: argparse.Namespace) -> None:
    rows, runs = [], []
    for path in sorted(Path(args.cache).glob("*.npz")):
        z = dict(np.load(path))
        sigma, est, start, p = float(z["sigma"]), float(z["estimate"]), int(z["start"]), z["psnr"]
        if args.size:  # the package's estimator as it is now, on the same noisy crop
            name = str(z["image"])
            top, left = ((float(z["top"]), float(z["left"])) if "top" in z else
                         next((t, l) for n, t, l in crops(path.name.split("--")[0]) if n == name))
            z["noisy"] = noisy_crop(name, top, left, int(sigma), args.size)[1]
            est = pca_sigma(z["noisy"]).sigma
        picks = {"told": discrepancy(z, sigma), "auto": discrepancy(z, est), "cliff": cliff(z, est),
                 "cliff_told": cliff(z, sigma), "bracket": bracket(z, est), "bracket_told": bracket(z, sigma),
                 "oracle": int(np.argmax(p))}
        if "whiteness" in z:
            picks["white"] = white(z, WHITE)
            picks["near_white"] = near_white(z, est)
        z["estimate"] = est
        runs.append(z)
        if int(z["probe"][0]) != picks["told"] + start:  # the target is kept every 5 steps: a step either way
            print(f"note: {path.name}: the stop told the true sigma, read off the curves, at step "
                  f"{picks['told'] + start}; the run's own detector at {int(z['probe'][0])}")
        rows.append({"set": path.name.split("--")[0], "image": str(z["image"]),
                     **({"crop": [float(z["top"]), float(z["left"])]} if "top" in z else {}), "sigma": int(sigma),
                     "estimate": round(est, 3), "noisy": round(float(z["noisy_psnr"]), 4),
                     **{k: {"step": i + start, "psnr": round(float(p[i]), 4)} for k, i in picks.items()}})
    if args.merge:
        kept = [r for r in json.loads(Path(args.merge).read_text())["rows"]
                if not any(_same_run(r, n) for n in rows)]
        print(f"{len(rows)} runs read again from {args.cache}, {len(kept)} kept from {args.merge}")
        rows = kept + rows
    by_sigma = sorted({r["sigma"] for r in rows})
    out = {"rows": rows, "summary": {}}
    print(f"{len(rows)} runs ({args.cache}); - told the true sigma, dB")
    for rule, ref in (("auto", "told"), ("cliff", "told"), ("bracket", "told"), ("bracket_told", "told"),
                      ("bracket", "bracket_told"), ("white", "told"), ("near_white", "told"), ("oracle", "told")):
        if rule not in rows[0]:
            continue
        d = np.array([r[rule]["psnr"] - r[ref]["psnr"] for r in rows])
        if ref != "told":
            rule = f"{rule} - {ref}"
        worst = rows[int(np.argmin(d))]
        summary = {"runs": len(d), "mean": round(float(d.mean()), 3), "within_0.3": round(float(np.mean(abs(d) <= 0.3)), 3),
                   "within_0.3_or_better": round(float(np.mean(d >= -0.3)), 3), "worse_than_1": int(np.sum(d < -1)),
                   "worst": round(float(d.min()), 3), "worst_run": f"{worst['image']}, sigma {worst['sigma']}",
                   "by_sigma": {s: round(float(np.mean([x for x, r in zip(d, rows) if r["sigma"] == s])), 3)
                                for s in by_sigma}}
        out["summary"][rule] = summary
        print(f"{rule:14s} mean {summary['mean']:+.2f}, within 0.3 dB {summary['within_0.3']:.0%} "
              f"(or better {summary['within_0.3_or_better']:.0%}), worse than 1 dB {summary['worse_than_1']}, "
              f"worst {summary['worst']:+.2f} ({summary['worst_run']}); by sigma "
              + ", ".join(f"{s}: {v:+.2f}" for s, v in summary["by_sigma"].items()))
    e = np.array([abs(r["estimate"] / r["sigma"] - 1) for r in rows])
    out["summary"]["estimate_error"] = {"median": round(float(np.median(e)), 4), "worst": round(float(e.max()), 4)}
    print(f"estimate's error |estimate / sigma - 1|: median {np.median(e):.1%}, worst {e.max():.1%}")
    if args.grid:
        print("the bracket's constants told the estimate, - told the true sigma (best 15):")
        grid(runs)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--set", choices=("tuning", "held_out", *FRESH_SETS), default="tuning")
    r.add_argument("--sigmas", default=",".join(map(str, SIGMAS)))
    r.add_argument("--images", type=int, default=None)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--size", type=int, default=64, help="crop side (px)")
    r.add_argument("--reverse", action="store_true", help="the runs in reverse order (a second process)")
    r.add_argument("--only", default=None, help="only the crops of these sources (comma-separated names)")
    r.add_argument("--cache", default="/tmp/stop-curves")
    u = sub.add_parser("rules")
    u.add_argument("--cache", default="/tmp/stop-curves")
    u.add_argument("--size", type=int, default=0,
                   help="estimate sigma again with the package's estimator on the runs' crops of this side "
                        "(0: the estimate kept with the run)")
    u.add_argument("--grid", action="store_true", help="also print a grid of the bracket's constants")
    u.add_argument("--out", default=None, help="write the per-run outcomes and the summary here (JSON)")
    u.add_argument("--merge", default=None,
                   help="a results file of an earlier read: its rows for runs the cache does not hold are kept, "
                        "and the summary is of both")
    args = ap.parse_args()
    if args.cmd == "run":
        run(args)
    else:
        rules(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
