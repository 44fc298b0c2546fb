"""Pieces every ``isnas-fast`` command shares: messages, task options, JSON output."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Optional

from ..errors import InputError
from ..io import atomic_write_text, check_output_path
from ..io.files import json_text

PROG = "isnas-fast"
EXIT_INPUT = 2


def eprint(msg: str) -> None:
    """One line on standard error."""
    print(msg, file=sys.stderr, flush=True)


def logger(quiet: bool) -> Callable[[str], None]:
    """``isnas-fast: <message>`` lines on standard error, or nothing when quiet."""
    return (lambda m: None) if quiet else (lambda m: eprint(f"{PROG}: {m}"))


def common_parser(*, seed_help: Optional[str] = None, device_help: Optional[str] = None,
                  device_default: str = "auto", reads_images: bool = True) -> argparse.ArgumentParser:
    """The options every command takes: --seed, -q/--quiet, --device (and --max-pixels where the
    command reads images); a command whose seed or device means something else says so in its help."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=0,
                        help=seed_help or "random seed (default 0); same seed, same result")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars or messages")
    common.add_argument("--device", default=device_default,
                        help=device_help or "auto (default: CUDA if available), cpu or cuda")
    if reads_images:
        common.add_argument("--max-pixels", type=int, default=None, metavar="N",
                            help="largest image file read, in pixels (default 8192x8192, or ISNAS_FAST_MAX_PIXELS)")
    return common


def add_json_argument(p: argparse.ArgumentParser, what: str) -> None:
    """``--json [REPORT]``, the same on every command: ``what`` as JSON to REPORT (a .json
    file), or to standard output when REPORT is ``-`` or left out."""
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="REPORT",
                   help=f"write {what} as JSON to REPORT (a .json file), or to standard output when REPORT is "
                        "'-' or left out (standard output then carries the JSON alone)")


def check_json_target(args: argparse.Namespace) -> None:
    """Check ``--json``'s file name before any work starts (standard output needs no check)."""
    if args.json not in (None, "-"):
        check_output_path(args.json, "JSON report", (".json",))


def _default(task: str, name: str) -> str:
    """The default of task parameter ``name``, as the task itself states it (e.g. ``25``)."""
    from ..tasks import make_task

    value = make_task(task).params()[name]
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_task_args(p: argparse.ArgumentParser, *, corrupting: bool = False, required: bool = True) -> None:
    """--task and the task parameters (--sigma, --mask, --factor; --p when corrupting); which task
    takes which, and their defaults, come from the tasks (:data:`~isnas_fast.tasks.TASK_PARAMETERS`)."""
    from ..tasks import SR_FACTORS, TASK_NAMES

    g = p.add_argument_group("task")
    g.add_argument("--task", required=required, choices=list(TASK_NAMES),
                   help="degradation: denoise (Gaussian noise), inpaint (missing pixels), sr (super-resolution)")
    if corrupting:
        g.add_argument("--sigma", type=float, default=None, metavar="S",
                       help="noise standard deviation in 0..255 units (denoise; default "
                            f"{_default('denoise', 'sigma')})")
    else:
        g.add_argument("--sigma", type=sigma_value, default=None, metavar="S|auto",
                       help="noise standard deviation in 0..255 units (denoise); auto (default): estimated "
                            "from the image (PCA of its patches, corrected for clipping)")
    if corrupting:
        g.add_argument("--p", type=float, default=None, metavar="PCT",
                       help=f"percent of pixels to remove at random (inpaint; default {_default('inpaint', 'p')})")
    g.add_argument("--mask", default=None, metavar="MASK",
                   help="mask image of the known pixels (inpaint; white = known, black = missing)")
    g.add_argument("--factor", type=int, default=None, choices=list(SR_FACTORS),
                   help=f"super-resolution factor (sr; default {_default('sr', 'factor')})")


def sigma_value(text: str) -> Optional[float]:
    """``--sigma``: a number in 0..255 units, or ``auto`` (None: estimate it)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def add_preset_argument(p: argparse.ArgumentParser) -> None:
    """--preset: where the search knobs not given on the command line come from."""
    from ..search import PRESETS

    p.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                   help="quick: CPU-friendly (default); paper: the paper's settings (GPU); the search knobs "
                        "not given here come from it")


def task_kwargs(args: argparse.Namespace) -> dict:
    """The task parameters given on the command line (``sigma``, ``p``, ``factor``; not ``mask``);
    a parameter the task does not take is an error."""
    from ..tasks import TASK_PARAMETERS

    takes = TASK_PARAMETERS[args.task]
    given = {name: getattr(args, name, None) for name in ("sigma", "p", "mask", "factor")}
    for name, value in given.items():
        if value is not None and name not in takes:
            raise InputError(f"--{name} does not apply to --task {args.task}")
    return {k: v for k, v in given.items() if v is not None and k != "mask"}


def task_from_args(args: argparse.Namespace, *, estimate_sigma: bool = True) -> Any:
    """The task the command line names, built (:class:`~isnas_fast.tasks.Task`; an inpainting
    mask loaded from --mask).  Denoising without a noise level: with ``estimate_sigma`` (--sigma
    auto) the name ``"denoise"`` alone, the level then estimated from each image; without it (a
    command that corrupts images) the task's default level."""
    from ..problem import resolve_task

    params = task_kwargs(args)
    if estimate_sigma and args.task == "denoise" and params.get("sigma") is None:
        return args.task
    return resolve_task(args.task, getattr(args, "mask", None), params)


def settings_from_args(args: argparse.Namespace) -> Any:
    """The search settings the command line names: --preset with the knob options applied."""
    from ..search import knob_options, settings_from_options

    return settings_from_options(args.preset, knob_options(args))


def write_json(data: Any, path: Optional[str]) -> None:
    """Strict JSON (NaN and infinities as null: :func:`isnas_fast.io.files.json_text`) to ``path``
    (atomically), or to standard output for None / ``-``."""
    text = json_text(data) + "\n"
    if path in (None, "-"):
        sys.stdout.write(text)
    else:
        atomic_write_text(path, text)
