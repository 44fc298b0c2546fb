"""``suite``: compare methods over a set of images (tables, plots), resumable,
in this process, local worker processes or on a Ray cluster."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import InputError
from ..search import add_knob_arguments, knob_options
from .common import add_preset_argument, add_task_args, eprint, logger, task_from_args

__all__ = ["register", "cmd_suite"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``suite`` to the subparsers ``sub``."""
    from ..suite.jobs import DEFAULT_METHODS, METHODS

    p = sub.add_parser(
        "suite", parents=[common], help="compare methods over a set of images: tables of PSNR/SSIM, plots",
        description="Corrupt every clean image with the task (seeded per image and seed), restore it with each "
                    "method, and write results.jsonl, summary.md/.csv and plots into --out. Running the same "
                    "command again skips the finished rows.",
        epilog="Example: isnas-fast suite builtin:paper --task denoise --methods isnas,nasdip --seeds 3 "
               "--out runs/denoise")
    p.add_argument("images", nargs="+", metavar="IMAGES",
                   help="clean images: folders (PNG, JPEG, TIFF, BMP), image files, or builtin:paper (the "
                        "paper's three test images)")
    add_task_args(p, corrupting=True)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the suite folder (created if missing; its parent must exist)")
    p.add_argument("--methods", default=None, metavar="LIST",
                   help=f"comma-separated, of {', '.join(METHODS)} (default {','.join(DEFAULT_METHODS)} and the "
                        "task's reference when its package is installed); cohort-best is an oracle that uses "
                        "the ground truth (analysis only); bm3d (denoise), bicubic (sr) and biharmonic (inpaint) "
                        "are references without training, each for its own task (bm3d and biharmonic: "
                        "pip install 'isnas-fast[references]'; the bm3d package is licensed for non-commercial "
                        "use only)")
    p.add_argument("--seeds", default="1", metavar="N|LIST",
                   help="a count N (seeds --seed .. --seed+N-1; default 1) or a list such as 0,3,7")
    add_preset_argument(p)
    add_knob_arguments(p.add_argument_group(
        "search knobs (override the preset; --width, --iterations and early stopping apply to every method)"),
        skip=("final",))
    g = p.add_argument_group("execution")
    g.add_argument("--executor", default="local", choices=["local", "ray"],
                   help='local (default: this machine) or ray (pip install "isnas-fast[ray]")')
    g.add_argument("--workers", type=int, default=1, metavar="N",
                   help="local: jobs in N processes (default 1: in this process, with per-job progress bars)")
    g.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch threads per job (local default: cores // workers; ray default 1); the same T "
                        "gives the same numbers on every executor")
    g.add_argument("--batch", type=int, default=1, metavar="N",
                   help="local, one worker: train the full-size runs of up to N jobs together in one program "
                        "(the search of isnas jobs still runs alone)")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="ray: the cluster to join (auto, HOST:PORT, ray://HOST:10001); default: a local instance")
    g.add_argument("--max-retries", type=int, default=3, metavar="N",
                   help="ray: how often a job whose worker died is run again (default 3)")
    p.add_argument("--tie", type=float, default=0.0, metavar="DB",
                   help="PSNR differences up to DB count as ties in the paired comparison (default 0)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.set_defaults(func=cmd_suite)


def _executor(args: argparse.Namespace) -> Any:
    from ..suite import LocalExecutor, RayExecutor

    if args.executor == "ray":
        if args.workers != 1 or args.batch != 1:
            raise InputError("--workers and --batch are for --executor local; Ray runs one task per job")
        return RayExecutor(address=args.address, threads=args.threads or 1, max_retries=args.max_retries)
    if args.address is not None:
        raise InputError("--address is for --executor ray")
    return LocalExecutor(workers=args.workers, threads=args.threads, batch=args.batch)


def cmd_suite(args: argparse.Namespace) -> int:
    from ..suite import run_suite
    from ..suite.jobs import parse_seeds
    from ..suite.summary import method_markdown

    if args.mask is not None:
        raise InputError("--mask does not apply to suite: each image and seed gets its own random mask (--p)")
    if "," in args.seeds and args.seed != 0:
        raise InputError("--seed sets the first seed of a count (--seeds N); a list of seeds names them all")
    result = run_suite(args.images, task_from_args(args, estimate_sigma=False), out=args.out, methods=args.methods,
                       seeds=parse_seeds(args.seeds, first=args.seed), preset=args.preset,
                       executor=_executor(args), device=args.device, plot=not args.no_plots, tie=args.tie,
                       quiet=args.quiet, log=logger(args.quiet), **knob_options(args))
    if not args.quiet:
        print(method_markdown(result.tables))
        eprint(f"{len(result.rows)} of {len(result.jobs)} rows in {result.folder / 'results.jsonl'}; tables in "
               f"{result.folder / 'summary.md'}")
    if result.failed:
        eprint(f"{len(result.failed)} job(s) failed (listed in summary.md); run the same command again to retry them")
        return 1
    return 0
