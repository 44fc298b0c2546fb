"""``study``: the NAS-dataset study of one image (how well the metrics predict quality)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..search import add_knob_arguments
from .common import (add_json_argument, add_preset_argument, add_task_args, check_json_target, eprint, logger,
                     settings_from_args, task_from_args, write_json)

__all__ = ["register", "cmd_study"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``study`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "study", parents=[common], help="train every genotype of a list on one image and measure the metrics",
        description="The NAS-dataset study of one image: every genotype of a list is trained on CORRUPTED; "
                    "the spectral metrics at initialisation are compared with the PSNR reached (Kendall tau, "
                    "Spearman rho, top-K hits), the search's pick and the NAS-DIP genotype are placed in the "
                    "PSNR distribution, and early stopping's returned-vs-best gap is recorded per run. "
                    "Resumable: rerun the same command after an interruption.")
    p.add_argument("input", metavar="CORRUPTED", help="the corrupted image")
    add_task_args(p)
    p.add_argument("--ground-truth", required=True, metavar="CLEAN",
                   help="the clean image (the study measures the PSNR each genotype reaches)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created if missing; its parent must exist): rows.jsonl, study.json, "
                        "study.md, plots")
    add_preset_argument(p)
    p.add_argument("--inits", type=int, default=1, metavar="R",
                   help="also average the metrics at initialisation over R random initialisations (default 1)")
    p.add_argument("--group", type=int, default=8, metavar="G", help="genotypes trained together (default 8)")
    add_json_argument(p, "the analysis")
    # every network of a study is trained at the search's width: the final run's size rule is not its knob
    add_knob_arguments(p.add_argument_group("search knobs (override the preset)"),
                       skip=("final_width", "by_size", "restarts", "blend", "anchor"))
    p.set_defaults(func=cmd_study)


def cmd_study(args: argparse.Namespace) -> int:
    from ..study import run_study

    if args.task == "inpaint" and args.mask is None:
        raise InputError("inpainting needs --mask (an image of the known pixels: white = known)")
    check_json_target(args)
    out = Path(args.out)
    result = run_study(args.input, task_from_args(args), ground_truth=args.ground_truth, out=out,
                       preset=args.preset, settings=settings_from_args(args), seed=args.seed, inits=args.inits,
                       group=args.group, device=args.device, quiet=args.quiet, log=logger(args.quiet))
    if args.json is not None:
        write_json(result.analysis, args.json)
    if args.json != "-":
        print((out / "study.md").read_text(), end="")
    if not args.quiet:
        eprint(f"study written to {out} (rows.jsonl, study.json, study.md)")
    return 0
