"""The ``isnas-fast`` command line.

Commands, one module per group: ``restore``, ``corrupt``, ``score``, ``demo``
(:mod:`~isnas_fast.cli.restore`), ``study`` (:mod:`~isnas_fast.cli.study`),
``suite`` (:mod:`~isnas_fast.cli.suite`), ``export``, ``run``
(:mod:`~isnas_fast.cli.deploy`).  Bad input prints one line
``isnas-fast: error: ...`` and exits with status 2, without a traceback;
warnings print as one line ``isnas-fast: warning: ...``.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Callable, Optional, Sequence

from ..errors import InputError
from ..io.images import MAX_PIXELS_ENV, set_max_pixels
from . import deploy, restore, study, suite
from .common import EXIT_INPUT, PROG, common_parser, eprint
from .interrupt import EXIT_INTERRUPTED, exit_interrupted, stop_on_interrupt

__all__ = ["main", "console", "build_parser", "PROG"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    from ..versions import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Restore images with a Deep Image Prior whose architecture is searched for each image "
                    "(ISNAS-DIP).",
        epilog="Run 'isnas-fast demo' for a first try; 'isnas-fast COMMAND --help' for details.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = common_parser()
    restore.register(sub, common)
    suite.register(sub, common)
    study.register(sub, common)
    deploy.register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    eprint(f"{PROG}: warning: {message}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``isnas-fast`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    limit_before = os.environ.get(MAX_PIXELS_ENV)
    with warnings.catch_warnings(), stop_on_interrupt(PROG):
        warnings.showwarning = _one_line_warning
        try:
            if getattr(args, "max_pixels", None) is not None:
                set_max_pixels(args.max_pixels)
            return int(func(args) or 0)
        except InputError as e:
            eprint(f"{PROG}: error: {e}")
            return EXIT_INPUT
        except KeyboardInterrupt:
            eprint(f"{PROG}: interrupted")
            return EXIT_INTERRUPTED
        finally:
            if limit_before is None:
                os.environ.pop(MAX_PIXELS_ENV, None)
            else:
                os.environ[MAX_PIXELS_ENV] = limit_before


def console() -> None:
    """The ``isnas-fast`` program: :func:`main`, then exit with its status.  An
    interrupted command ends without interpreter finalisation
    (:func:`~isnas_fast.cli.interrupt.exit_interrupted`)."""
    status = main()
    if status == EXIT_INTERRUPTED:
        exit_interrupted()
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    console()
