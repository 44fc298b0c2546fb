"""The ``isnas-fast`` command line.

Subcommands: ``restore``, ``corrupt``, ``score``, ``demo`` (and, when the
deployment module is present, ``export`` and ``run``).  Bad input prints one
line ``isnas-fast: error: ...`` and exits with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .errors import InputError

PROG = "isnas-fast"
EXIT_INPUT = 2


def _eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- argument helpers
def _add_task_args(p: argparse.ArgumentParser, *, corrupting: bool = False) -> None:
    g = p.add_argument_group("task")
    g.add_argument("--task", required=True, choices=["denoise", "inpaint", "sr"],
                   help="degradation: denoise (Gaussian noise), inpaint (missing pixels), sr (super-resolution)")
    g.add_argument("--sigma", type=float, default=None, metavar="S",
                   help="noise standard deviation in 0..255 units (denoise; default 25)")
    if corrupting:
        g.add_argument("--p", type=float, default=None, metavar="PCT",
                       help="percent of pixels to remove at random (inpaint; default 50)")
    g.add_argument("--mask", default=None, metavar="MASK",
                   help="mask image of the known pixels (inpaint; white = known, black = missing)")
    g.add_argument("--factor", type=int, default=None, choices=[2, 4, 8],
                   help="super-resolution factor (sr; default 4)")


def _task_kwargs(args: argparse.Namespace) -> dict:
    kw: dict[str, Any] = {}
    if args.task == "denoise":
        kw["sigma"] = args.sigma
    elif args.task == "sr":
        kw["factor"] = args.factor
    elif args.task == "inpaint" and getattr(args, "p", None) is not None:
        kw["p"] = args.p
    stray = {"sigma": args.sigma if args.task != "denoise" else None,
             "factor": args.factor if args.task != "sr" else None,
             "mask": args.mask if args.task != "inpaint" else None}
    for name, value in stray.items():
        if value is not None:
            raise InputError(f"--{name} does not apply to --task {args.task}")
    return {k: v for k, v in kw.items() if v is not None}


def _check_output(path: Optional[str], what: str, suffixes: Sequence[str] = ()) -> Optional[Path]:
    """Fail before long work starts if an output cannot be written."""
    if path is None or path == "-":
        return None
    p = Path(path)
    if not p.parent.is_dir():
        raise InputError(f"output folder does not exist: {p.parent} (for {what} {p})")
    if suffixes and p.suffix.lower() not in suffixes:
        raise InputError(f"{what} {p} must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder")
    return p


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")


def _write_json(data: dict, path: Optional[str]) -> None:
    from .imageio import atomic_write_text

    text = json.dumps(data, indent=2, default=str) + "\n"
    if path in (None, "-"):
        sys.stdout.write(text)
    else:
        atomic_write_text(path, text)


# ---------------------------------------------------------------- subcommands
def cmd_restore(args: argparse.Namespace) -> int:
    from .api import restore
    from .imageio import save_image

    out = _check_output(args.output, "output image", IMAGE_SUFFIXES)
    _check_output(args.json, "JSON report", (".json",))
    if args.save_run is not None and Path(args.save_run).exists() and any(Path(args.save_run).iterdir()):
        raise InputError(f"--save-run folder {args.save_run} exists and is not empty")
    if args.task == "inpaint" and args.mask is None:
        raise InputError("inpainting needs --mask (an image of the known pixels: white = known)")
    log = (lambda m: None) if args.quiet else (lambda m: _eprint(f"{PROG}: {m}"))
    es: Optional[bool] = None if args.early_stopping is None else args.early_stopping
    t0 = time.perf_counter()
    result = restore(
        args.input, args.task, args.preset, ground_truth=args.ground_truth, mask=args.mask, seed=args.seed,
        arch=args.arch, iterations=args.iterations, width=args.width, num_candidates=args.candidates,
        cohort_size=args.cohort_size, cohort_iterations=args.cohort_iterations, metric=args.metric,
        models=args.models, early_stopping=es, compile=args.compile, precision=args.precision,
        cuda_graph=args.cuda_graph, device=args.device, quiet=args.quiet, log=log,
        **_task_kwargs(args),
    )
    save_image(result.tensor, out)
    report = result.report()
    report["input"] = str(args.input)
    report["output"] = str(out)
    if args.save_run is not None:
        from .bundle import save_run

        report["run_dir"] = str(save_run(result, args.save_run, ground_truth=result.ground_truth))
    if args.json is not None:
        _write_json(report, args.json)
    if not args.quiet:
        msg = f"restored image written to {out} (architecture {result.genotype}, {time.perf_counter() - t0:.1f} s"
        if result.psnr is not None:
            msg += f", PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.4f}"
        _eprint(msg + ")")
    return 0


def cmd_corrupt(args: argparse.Namespace) -> int:
    from .imageio import load_image, save_image
    from .tasks import make_task

    out = _check_output(args.output, "output image", IMAGE_SUFFIXES)
    mask_out = _check_output(args.mask_out, "mask image", IMAGE_SUFFIXES)
    if args.mask_out and args.task != "inpaint":
        raise InputError("--mask-out only applies to --task inpaint")
    kw = _task_kwargs(args)
    if args.task == "inpaint" and args.mask is not None:
        from .api import _load_mask

        kw = {"mask": _load_mask(args.mask)}
    task = make_task(args.task, **kw)
    clean = load_image(args.input)
    if args.task == "sr":
        f = task.factor  # type: ignore[attr-defined]
        h, w = clean.shape[-2:]
        clean = clean[..., : h - h % f, : w - w % f]
    obs = task.corrupt(clean, seed=args.seed)
    save_image(obs.y, out)
    if mask_out is not None and obs.mask is not None:
        save_image(obs.mask, mask_out)
    if not args.quiet:
        extra = f" and mask to {mask_out}" if mask_out else ""
        _eprint(f"corrupted image written to {out}{extra}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .api import score
    from .search import SearchSettings, candidate_list

    if args.task == "inpaint" and args.mask is None:
        raise InputError("scoring for inpainting needs --mask (white = known)")
    _check_output(args.json, "JSON report", (".json",))
    models = args.models or "builtin"
    if models == "random" or (models == "builtin" and args.candidates is not None):
        # A seeded sample of the built-in list, or random genotypes.
        genotypes: Any = candidate_list(SearchSettings(candidates=models, num_candidates=args.candidates),
                                        args.seed)[0]
    else:
        genotypes = models
    metrics = args.metric or ["psd_db_strip_mse"]
    rows = score(args.input, genotypes, args.task, metrics, width=args.width, seed=args.seed, mask=args.mask,
                 device=args.device, quiet=args.quiet, **_task_kwargs(args))
    first = list(rows[0].keys())[1]
    ranked = sorted(rows, key=lambda r: r[first])
    if args.json is not None:
        _write_json({"task": args.task, "metrics": list(rows[0].keys())[1:], "width": args.width,
                     "seed": args.seed, "scores": rows}, args.json)
    if args.json != "-":
        names = list(rows[0].keys())[1:]
        print("genotype".ljust(30) + "".join(n.rjust(24) for n in names))
        for r in ranked[: args.top]:
            print(r["genotype"].ljust(30) + "".join(f"{r[n]:24.6g}" for n in names))
        if len(ranked) > args.top:
            print(f"... {len(ranked) - args.top} more (ranked by {first}; use --top or --json for all)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .api import restore
    from .imageio import atomic_write_text, load_image, save_image
    from .quality import psnr
    from .tasks import Denoise

    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"demo output {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    sample = resources.files("isnas_fast").joinpath("data/sample.png")
    with resources.as_file(sample) as path:
        clean = load_image(path)
    obs = Denoise(25).corrupt(clean, seed=args.seed)
    noisy_psnr = float(psnr(obs.y, clean)[0])
    save_image(clean, out_dir / "clean.png")
    save_image(obs.y, out_dir / "noisy.png")
    log = (lambda m: None) if args.quiet else (lambda m: _eprint(f"{PROG}: {m}"))
    log(f"demo: denoising the bundled {clean.shape[-1]}x{clean.shape[-2]} sample (sigma 25) with the quick preset")
    result = restore(obs.y, "denoise", "quick", sigma=25, ground_truth=clean, seed=args.seed, device=args.device,
                     quiet=args.quiet, log=log)
    save_image(result.tensor, out_dir / "restored.png")
    report = result.report()
    report["noisy_psnr"] = round(noisy_psnr, 4)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2, default=str) + "\n")
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


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Restore images with a Deep Image Prior whose architecture is searched for each image "
                    "(ISNAS-DIP).",
        epilog="Run 'isnas-fast demo' for a first try; 'isnas-fast COMMAND --help' for details.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same result")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars or messages")
    common.add_argument("--device", default="auto", help="auto (default: CUDA if available), cpu or cuda")

    p = sub.add_parser("restore", parents=[common], help="restore a corrupted image",
                       description="Search an architecture for INPUT (the corrupted image) and restore it with DIP.")
    p.add_argument("input", metavar="INPUT", help="the corrupted image (noisy, masked or low-resolution)")
    _add_task_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the restored image")
    p.add_argument("--json", default=None, metavar="REPORT", help="write a JSON report here ('-' = stdout)")
    p.add_argument("--ground-truth", default=None, metavar="GT",
                   help="clean image, only to report PSNR/SSIM (the method never uses it)")
    p.add_argument("--preset", default="quick", choices=["quick", "paper"],
                   help="quick: CPU-friendly (default); paper: the paper's settings (GPU)")
    p.add_argument("--arch", default=None, metavar="NAME|GENOTYPE",
                   help="skip the search: nasdip-denoise, nasdip-inpaint, nasdip-sr, dip-skip or 'u,bits'")
    p.add_argument("--iterations", type=int, default=None, metavar="N",
                   help="DIP steps of the final run (default: the task's paper count)")
    s = p.add_argument_group("search knobs (override the preset)")
    s.add_argument("--width", type=int, default=None, help="network width W (multiple of 16)")
    s.add_argument("--candidates", type=int, default=None, metavar="N", help="number of candidates to score")
    s.add_argument("--cohort-size", type=int, default=None, metavar="K", help="cohort size")
    s.add_argument("--cohort-iterations", type=int, default=None, metavar="N", help="DIP steps per cohort member")
    s.add_argument("--metric", default=None, help="scoring metric (default psd_db_strip_mse)")
    s.add_argument("--models", default=None, metavar="CSV",
                   help="candidate list: a 'u,bits' CSV file, 'builtin' (522 genotypes) or 'random'")
    es = s.add_mutually_exclusive_group()
    es.add_argument("--early-stopping", dest="early_stopping", action="store_true", default=None,
                    help="stop the final run by the ES-WMV detector")
    es.add_argument("--no-early-stopping", dest="early_stopping", action="store_false",
                    help="always run all iterations")
    f = p.add_argument_group("speed")
    cg = f.add_mutually_exclusive_group()
    cg.add_argument("--compile", dest="compile", action="store_true", default=None,
                    help="compile the DIP step with torch.compile (default: on for GPU; on the CPU only for "
                         "very long runs, since compiling takes minutes there)")
    cg.add_argument("--no-compile", dest="compile", action="store_false", help="never compile")
    f.add_argument("--cuda-graph", action="store_true", default=None,
                   help="replay the DIP step as a CUDA graph instead of compiling it (CUDA only: no compile "
                        "time; the cohort on a GPU does this by default)")
    f.add_argument("--precision", default=None, choices=["fp32", "tf32", "bf16"],
                   help="fp32: float32 math (TF32 off on GPU); tf32: TF32 convolutions (the default on GPU); "
                        "bf16: autocast on GPU (faster; 0.2 dB lower PSNR on average over 3 GPU runs of 1200 "
                        "steps, none measurable at the PSNR peak). Default: tf32 on GPU, fp32 on the CPU")
    p.add_argument("--save-run", default=None, metavar="DIR",
                   help="save the trained network, input code and report to DIR (for export)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("corrupt", parents=[common], help="corrupt a clean image (for experiments)",
                       description="Add noise, remove pixels or downscale a clean image, seeded.")
    p.add_argument("input", metavar="CLEAN", help="the clean image")
    _add_task_args(p, corrupting=True)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the corrupted image")
    p.add_argument("--mask-out", default=None, metavar="MASK", help="inpaint: also write the mask (white = known)")
    p.set_defaults(func=cmd_corrupt)

    p = sub.add_parser("score", parents=[common], help="score candidate architectures on an image (no training)",
                       description="Rank candidate architectures by a spectral metric of their random output.")
    p.add_argument("input", metavar="INPUT", help="the corrupted image")
    _add_task_args(p)
    p.add_argument("--models", default=None, metavar="CSV",
                   help="a 'u,bits' CSV file, 'builtin' (default: the 522 genotypes) or 'random'")
    p.add_argument("--candidates", type=int, default=None, metavar="N", help="score a seeded sample of N")
    p.add_argument("--metric", action="append", default=None,
                   help="metric (repeatable; default psd_db_strip_mse); e.g. psd_strip_hist_emd, per_bw_0.9")
    p.add_argument("--width", type=int, default=128, help="network width W (default 128)")
    p.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="REPORT",
                   help="write all scores as JSON (to REPORT, or stdout when no file is given)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("demo", parents=[common], help="denoise the bundled sample image (quick preset)",
                       description="Corrupt the bundled sample with sigma=25 noise, restore it with the quick "
                                   "preset and print the PSNR before and after.")
    p.add_argument("--out-dir", default="isnas-demo", metavar="DIR", help="where to write images (default ./isnas-demo)")
    p.set_defaults(func=cmd_demo)

    try:
        from . import cli_deploy
    except ImportError:
        cli_deploy = None  # type: ignore[assignment]
    if cli_deploy is not None:
        cli_deploy.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``isnas-fast`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except InputError as e:
        _eprint(f"{PROG}: error: {e}")
        return EXIT_INPUT
    except KeyboardInterrupt:
        _eprint(f"{PROG}: interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
