"""``restore``, ``corrupt``, ``score`` and ``demo``: the commands around one image."""
from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from tqdm.auto import tqdm

from ..errors import InputError
from ..io import (IMAGE_SUFFIXES, check_output_folder, check_output_path, load_image, read_image,
                  save_image)
from ..io.files import make_folder
from ..io.inputs import check_writable_folder, collect_image_files, read_stdin_image, write_stdout_image
from ..search import add_knob_arguments
from .common import (add_json_argument, add_preset_argument, add_task_args, check_json_target, eprint, logger,
                     settings_from_args, task_from_args, write_json)

__all__ = ["register", "cmd_restore", "cmd_corrupt", "cmd_score", "cmd_demo"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``restore``, ``corrupt``, ``score`` and ``demo`` to the subparsers ``sub``."""
    p = sub.add_parser("restore", parents=[common], help="restore corrupted images",
                       description="Search an architecture for each INPUT (a corrupted image) and restore it "
                                   "with DIP. The output has the input's size (x factor for sr).",
                       epilog="Several inputs or folders: -o names a folder; each image is written there under "
                              "its own name, images already there are skipped, and an image that fails is "
                              "reported while the rest go on. '-' reads one image from standard input (-i) or "
                              "writes PNG to standard output (-o).")
    p.add_argument("input", metavar="INPUT", nargs="+",
                   help="corrupted image(s) (noisy, masked or low-resolution), folders of them, or '-' for stdin")
    add_task_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="restored image (16-bit PNG/TIFF for a 16-bit input), '-' for PNG on stdout, or a "
                        "folder for several inputs")
    add_json_argument(p, "the report")
    p.add_argument("--ground-truth", default=None, metavar="GT",
                   help="clean image, only to report PSNR/SSIM (the method never uses it; one input only)")
    add_preset_argument(p)
    p.add_argument("--arch", default=None, metavar="NAME|GENOTYPE",
                   help="skip the search: nasdip-denoise, nasdip-inpaint, nasdip-sr, dip-skip or 'u,bits'")
    add_knob_arguments(p.add_argument_group("search knobs (override the preset)"))
    p.add_argument("--tile", type=int, default=None, metavar="PX",
                   help="restore in overlapping tiles of PX px (a multiple of 32), trained together and blended; "
                        "default: the whole image when its estimated memory fits, else tiles that fit")
    p.add_argument("--save-run", default=None, metavar="DIR",
                   help="save the trained network, input code and report to DIR (for export; one input only)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("corrupt", parents=[common], help="corrupt a clean image (for experiments)",
                       description="Add noise, remove pixels or downscale a clean image, seeded.")
    p.add_argument("input", metavar="CLEAN", help="the clean image")
    add_task_args(p, corrupting=True)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the corrupted image")
    p.add_argument("--mask-out", default=None, metavar="MASK", help="inpaint: also write the mask (white = known)")
    p.set_defaults(func=cmd_corrupt)

    p = sub.add_parser("score", parents=[common], help="score candidate architectures on an image (no training)",
                       description="Rank candidate architectures by a spectral metric of their random output.")
    p.add_argument("input", metavar="INPUT", help="the corrupted image")
    add_task_args(p)
    p.add_argument("--models", default=None, metavar="LIST",
                   help="builtin522 (default: the 522 genotypes; also 'builtin'), random5000, random, random:N "
                        "or a 'u,bits' CSV file")
    p.add_argument("--candidates", type=int, default=None, metavar="N", help="score a seeded sample of N")
    p.add_argument("--metric", action="append", default=None, metavar="M[,M...]",
                   help="scoring metric(s), comma-separated as in restore (default psd_db_strip_mse); e.g. "
                        "psd_db_strip_mse,psd_strip_hist_emd,per_bw_0.9")
    p.add_argument("--width", type=int, default=128, help="network width W (default 128)")
    p.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    add_json_argument(p, "every score")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("demo", parents=[common], help="denoise the bundled sample image (quick preset)",
                       description="Corrupt the bundled sample with sigma=25 noise, restore it with the quick "
                                   "preset and print the PSNR before and after.")
    p.add_argument("--out-dir", default="isnas-demo", metavar="DIR", help="where to write images (default ./isnas-demo)")
    p.set_defaults(func=cmd_demo)


def print_cohorts(result: Any) -> None:
    """One table per metric: the cohort, its metric values and selection scores, the pick marked.

    The score is the held-out PSNR under the validated selection and the PSNR to the
    cohort's average under the paper's; a member that was not trained shows "-", and
    the table says why when the validated selection ranks nothing."""
    from ..search.validation import unranked_reason

    search = result.search
    if search is None:
        return
    validated = result.settings.selection == "validated"
    why = unranked_reason(result.settings, result.task) if validated else None
    column = "held-out PSNR" if validated else "PSNR to average"
    for m in search.metrics:
        eprint(f"cohort of {m} (pick: {search.picks[m]})" + (f"; not trained: {why}" if why else ""))
        eprint(f"  {'genotype':30s} {'metric':>12s} {column:>16s}")
        for c in search.cohorts[m]:
            mark = " *" if c.selected else ""
            score = f"{c.selection_psnr:16.3f}" if c.selection_psnr == c.selection_psnr else f"{'-':>16s}"
            eprint(f"  {str(c.genotype):30s} {c.metric_value:12.5g} {score}{mark}")


def _restore_one(args: argparse.Namespace, run: tuple, source: Any, out: Optional[Path], log: Any,
                 name: str) -> dict:
    """Restore one image (a path, or a decoded ``(image, depth)``) into ``out`` (None: PNG on
    stdout) with ``run`` = (the task, the search settings); its report.  ``name``: the input as
    the report names it."""
    from ..api import restore

    task, settings = run
    image, depth = read_image(source) if not isinstance(source, tuple) else source
    t0 = time.perf_counter()
    result = restore(image, task, args.preset, settings=settings, ground_truth=args.ground_truth, seed=args.seed,
                     arch=args.arch, device=args.device, quiet=args.quiet, log=log, tile=args.tile)
    if out is None:
        write_stdout_image(result.tensor, depth)
    else:
        save_image(result.tensor, out, bit_depth=depth if out.suffix.lower() in (".png", ".tif", ".tiff") else 8)
    report = result.report()
    report["input"] = name
    report["output"] = "-" if out is None else str(out)
    if args.save_run is not None:
        from ..bundle import save_run
        report["run_dir"] = str(save_run(result, args.save_run))
    if not args.quiet:
        print_cohorts(result)
        starts, blended, anchored = report.get("restarts"), report.get("blended"), report.get("anchored")
        msg = (f"restored image written to {report['output']} (architecture {result.genotype}, "
               + (f"the mean of {len(starts)} random starts, " if starts and not anchored else "")
               + (f"{anchored['anchor']} upsampling plus {anchored['weight']:.2f} of {len(starts)} random starts' "
                  f"difference from it, " if anchored else "")
               + (f"blended with {blended[1]['architecture']} (weight {blended[1]['weight']:.2g}), "
                  if blended else "")
               + f"{time.perf_counter() - t0:.1f} s")
        if result.psnr is not None:
            msg += f", PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.4f}"
        eprint(msg + ")")
    return report


def _many_outputs(args: argparse.Namespace) -> bool:
    """Whether -o names a folder: several inputs, a folder input, or an existing folder."""
    return len(args.input) > 1 or any(Path(i).is_dir() for i in args.input if i != "-") or \
        (args.output != "-" and Path(args.output).is_dir())


def cmd_restore(args: argparse.Namespace) -> int:
    if args.task == "inpaint" and args.mask is None:
        raise InputError("inpainting needs --mask (an image of the known pixels: white = known)")
    check_json_target(args)
    if "-" in args.input and len(args.input) > 1:
        raise InputError("'-' (standard input) restores one image; give it alone")
    if _many_outputs(args):
        return _restore_many(args)
    if args.save_run is not None and args.tile is not None:
        raise InputError("--save-run keeps one network, but --tile trains one per tile; use one of them")
    if args.save_run is not None and Path(args.save_run).exists() and any(Path(args.save_run).iterdir()):
        raise InputError(f"--save-run folder {args.save_run} exists and is not empty")
    out = None if args.output == "-" else check_output_path(args.output, "output image", IMAGE_SUFFIXES)
    if out is None and args.json == "-":
        raise InputError("--json - and -o - both write to standard output; write one of them to a file")
    log = logger(args.quiet)
    run = (task_from_args(args), settings_from_args(args))
    source: Any = read_stdin_image() if args.input[0] == "-" else args.input[0]
    report = _restore_one(args, run, source, out, log, str(args.input[0]))
    if args.json is not None:
        write_json(report, args.json)
    return 0


def _restore_many(args: argparse.Namespace) -> int:
    """Restore every input image into the folder -o; skip finished ones, go on past failures."""
    for flag, value in (("--ground-truth", args.ground_truth), ("--save-run", args.save_run),
                        ("--mask", args.mask)):
        if value is not None:
            raise InputError(f"{flag} applies to one input image, not to several")
    if args.output == "-":
        raise InputError("-o - writes one image to standard output; give a folder for several inputs")
    out_dir = check_output_folder(args.output, "output folder")
    make_folder(out_dir, "output folder")
    check_writable_folder(out_dir, "output folder")
    run = (task_from_args(args), settings_from_args(args))
    files, unreadable = collect_image_files(args.input)
    log = logger(args.quiet)
    for path, why in unreadable:
        eprint(f"isnas-fast: warning: skipping {path}: {why}")
    names: dict[str, Path] = {}
    for f in files:
        if f.name in names:
            raise InputError(f"two inputs would both be written as {out_dir / f.name}: {names[f.name]} and {f}")
        names[f.name] = f
    reports, failed, skipped = [], [], []
    todo = [f for f in files if not (out_dir / f.name).exists()]
    skipped = [f for f in files if (out_dir / f.name).exists()]
    if skipped:
        log(f"{len(skipped)} image(s) already restored in {out_dir}: skipped")
    images = tqdm(todo, desc="images", unit="image", disable=True if args.quiet else None)
    for i, f in enumerate(images, 1):
        log(f"image {i}/{len(todo)}: {f}")
        try:
            decoded = read_image(f)
        except InputError as exc:
            eprint(f"isnas-fast: warning: skipping {f}: {exc}")
            unreadable.append((f, str(exc)))
            continue
        try:
            reports.append(_restore_one(args, run, decoded, out_dir / f.name, log, str(f)))
        except KeyboardInterrupt:
            raise
        except (InputError, RuntimeError, OSError) as exc:
            why = " ".join(str(exc).split()) or type(exc).__name__
            eprint(f"isnas-fast: error: {f}: {why}")
            failed.append((str(f), why))
    images.close()
    if args.json is not None:
        write_json({"output_folder": str(out_dir), "restored": reports,
                    "skipped_done": [str(f) for f in skipped],
                    "failed": [{"input": p, "error": w} for p, w in failed],
                    "unreadable": [{"input": str(p), "error": w} for p, w in unreadable]}, args.json)
    if not args.quiet:
        eprint(f"isnas-fast: {len(reports)} restored, {len(skipped)} already done, {len(failed)} failed, "
               f"{len(unreadable)} unreadable (output folder {out_dir})")
        for p, w in failed + [(str(p), w) for p, w in unreadable]:
            eprint(f"  not restored: {p}: {w}")
    return 1 if failed or unreadable else 0


def cmd_corrupt(args: argparse.Namespace) -> int:
    out = check_output_path(args.output, "output image", IMAGE_SUFFIXES)
    mask_out = check_output_path(args.mask_out, "mask image", IMAGE_SUFFIXES) if args.mask_out else None
    if args.mask_out and args.task != "inpaint":
        raise InputError("--mask-out only applies to --task inpaint")
    task = task_from_args(args, estimate_sigma=False)
    clean, depth = read_image(args.input)
    if args.task == "sr":
        f = task.factor  # type: ignore[attr-defined]
        h, w = clean.shape[-2:]
        clean = clean[..., : h - h % f, : w - w % f]
    obs = task.corrupt(clean, seed=args.seed)
    save_image(obs.y, out, bit_depth=depth if out.suffix.lower() in (".png", ".tif", ".tiff") else 8)
    if mask_out is not None and obs.mask is not None:
        save_image(obs.mask, mask_out)
    if not args.quiet:
        extra = f" and mask to {mask_out}" if mask_out else ""
        eprint(f"corrupted image written to {out}{extra}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ..api import score
    from ..search import DEFAULT_METRIC, candidate_list

    if args.task == "inpaint" and args.mask is None:
        raise InputError("scoring for inpainting needs --mask (white = known)")
    check_json_target(args)
    models = args.models or "builtin522"
    genotypes, _ = candidate_list(models, args.candidates, args.seed)
    metrics = [m.strip() for given in (args.metric or [DEFAULT_METRIC]) for m in given.split(",") if m.strip()]
    if not metrics:
        raise InputError("--metric names no metric")
    rows = score(args.input, genotypes, task_from_args(args, estimate_sigma=False), metrics, width=args.width,
                 seed=args.seed, device=args.device, quiet=args.quiet)
    names = list(rows[0].keys())[1:]
    ranked = sorted(rows, key=lambda r: r[names[0]])
    if args.json is not None:
        write_json({"task": args.task, "metrics": names, "width": args.width, "seed": args.seed, "scores": rows},
                   args.json)
    if args.json != "-":
        print("genotype".ljust(30) + "".join(n.rjust(24) for n in names))
        for r in ranked[: args.top]:
            print(r["genotype"].ljust(30) + "".join(f"{r[n]:24.6g}" for n in names))
        if len(ranked) > args.top:
            print(f"... {len(ranked) - args.top} more (ranked by {names[0]}; use --top or --json for all)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..api import restore
    from ..quality import psnr
    from ..tasks import Denoise

    out_dir = check_output_folder(args.out_dir, "demo folder")
    out_dir.mkdir(exist_ok=True)
    sample = resources.files("isnas_fast").joinpath("data/sample.png")
    with resources.as_file(sample) as path:
        clean = load_image(path)
    obs = Denoise(25).corrupt(clean, seed=args.seed)
    noisy_psnr = float(psnr(obs.y, clean)[0])
    save_image(clean, out_dir / "clean.png")
    save_image(obs.y, out_dir / "noisy.png")
    log = logger(args.quiet)
    log(f"demo: denoising the bundled {clean.shape[-1]}x{clean.shape[-2]} sample (sigma 25) with the quick preset")
    result = restore(obs.y, "denoise", "quick", sigma=25, ground_truth=clean, seed=args.seed, device=args.device,
                     quiet=args.quiet, log=log)
    save_image(result.tensor, out_dir / "restored.png")
    report = result.report()
    report["noisy_psnr"] = round(noisy_psnr, 4)
    write_json(report, str(out_dir / "report.json"))
    print(f"noisy PSNR    {noisy_psnr:6.2f} dB")
    print(f"restored PSNR {result.psnr:6.2f} dB  (SSIM {result.ssim:.4f}, +{result.psnr - noisy_psnr:.2f} dB)")
    print(f"architecture  {result.genotype}  (cohort of {len(result.cohort)} from "
          f"{result.search_info.get('candidates')} candidates)")
    print(f"time          {result.timings_s['total']:.1f} s  "
          f"(score {result.timings_s.get('score', 0):.1f}, cohort {result.timings_s.get('cohort', 0):.1f}, "
          f"final {result.timings_s.get('final', 0):.1f})")
    print(f"images        {out_dir / 'clean.png'}, {out_dir / 'noisy.png'}, {out_dir / 'restored.png'}")
    print(f"report        {out_dir / 'report.json'}")
    return 0
