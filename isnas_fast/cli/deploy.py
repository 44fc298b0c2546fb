"""``export`` and ``run``: deploying a saved run (docs/design.md §1 step 6).

    isnas-fast export RUN_DIR --format onnx|pt2 -o OUT [--device cpu|cuda]
    isnas-fast run MODEL.onnx|MODEL.pt2 -o OUT.png [--device auto|cpu|cuda] [--json [REPORT]]

Each handler returns an exit code and raises :class:`InputError` for bad input
(the main CLI prints ``error: <message>`` and exits 2).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import IMAGE_SUFFIXES, check_output_path
from .common import add_json_argument, check_json_target, common_parser, write_json

__all__ = ["register", "cmd_export", "cmd_run"]

_FORMATS = {".onnx": "onnx", ".pt2": "pt2"}


def register(subparsers: Any) -> None:
    """Add the ``export`` and ``run`` subcommands to an argparse subparsers object.

    Each sets ``func`` (``args.func(args) -> int``) with ``set_defaults``.  Both take the
    options every command takes (--seed, -q/--quiet, --device); nothing in them is random.
    """
    no_seed = "accepted like every command's; nothing here is random, so it changes nothing"
    exporting = common_parser(seed_help=no_seed, reads_images=False, device_default="cpu",
                              device_help="pt2: the device the package is compiled for and runs on, cpu "
                                          "(default) or cuda; ONNX models run on either (see run --device)")
    running = common_parser(seed_help=no_seed, reads_images=False,
                            device_help="ONNX Runtime's provider: auto (default: CUDA when available, else "
                                        "CPU), cpu or cuda; a .pt2 package runs on the device it was compiled for")
    p = subparsers.add_parser(
        "export", parents=[exporting],
        help="export a saved run (restore --save-run) to ONNX or a compiled .pt2 package",
        description="Export the trained network of a run bundle. The model takes no input and reproduces "
                    "the image the run returned (the run's averaged network on its stored code). "
                    "A bundle is data: it is checked before its tensors are read (weights_only, sizes, "
                    "checksums). A .pt2 package is native code: whoever runs one must trust where it came from.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run bundle folder written by restore --save-run")
    p.add_argument("--format", choices=sorted(set(_FORMATS.values())), default=None,
                   help="onnx (ONNX Runtime; no inputs) or pt2 (AOTInductor package, "
                        "compiles for a minute or more on a CPU); default: from the suffix of -o")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file (.onnx or .pt2)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (11-20, default 17)")
    p.set_defaults(func=cmd_export)

    r = subparsers.add_parser(
        "run", parents=[running],
        help="run an exported model (.onnx with ONNX Runtime, .pt2 with TorchInductor) and save the image",
        description="Run an exported model and save its output image. An ONNX model is data. A .pt2 package "
                    "is executable native code that runs when loaded: only run .pt2 files you built yourself or "
                    "got from someone you trust (archives with paths leading outside their folder, links or "
                    "oversized contents are refused, but no check makes a package's own code safe).")
    r.add_argument("model", metavar="MODEL", help="exported model: .onnx (data) or .pt2 (native code: trusted "
                                                  "files only)")
    r.add_argument("-o", "--output", required=True, metavar="OUT.png", help="output image (.png, .jpg, ...)")
    # The option's earlier name, still taken (--device is the name every command shares).
    r.add_argument("--provider", dest="device", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add_json_argument(r, "a report (model, provider, output, size, seconds)")
    r.set_defaults(func=cmd_run)


def _format_of(path: Path, given: str | None) -> str:
    by_suffix = _FORMATS.get(path.suffix.lower())
    if given is None:
        if by_suffix is None:
            raise InputError(f"cannot tell the export format from {path.name!r}; use .onnx or .pt2, or --format")
        return given or by_suffix
    if by_suffix is not None and by_suffix != given:
        raise InputError(f"--format {given} does not match the output name {path.name!r}")
    return given


def _pt2_device(device: str) -> str:
    """``export --device`` for a .pt2 package: cpu or cuda (auto: CUDA when available)."""
    import torch

    name = str(device).strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, got {device!r}")
    return name


def cmd_export(args: argparse.Namespace) -> int:
    """``isnas-fast export RUN_DIR --format onnx|pt2 -o OUT``."""
    from ..bundle import load_run

    out = Path(args.output)
    fmt = _format_of(out, args.format)
    run = load_run(args.run_dir)
    t = time.perf_counter()
    if fmt == "onnx":
        from ..export.onnx_export import to_onnx

        to_onnx(run, out, opset=args.opset)
    else:
        from ..export.aoti import to_pt2

        if not args.quiet:
            print("compiling with AOTInductor (a minute or more on a CPU)...", flush=True)
        to_pt2(run, out, device=_pt2_device(args.device))
    if not args.quiet:
        h, w = run.size
        print(f"wrote {out} ({fmt}, {run.genotype}, {w}x{h}, {time.perf_counter() - t:.1f} s); "
              "it reproduces the image the run returned")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``isnas-fast run MODEL -o OUT.png [--device ...] [--json [REPORT]]``."""
    import numpy as np
    import torch

    from ..io import save_image

    model = Path(args.model)
    out = check_output_path(args.output, "output image", IMAGE_SUFFIXES)
    check_json_target(args)
    t = time.perf_counter()
    if model.suffix.lower() == ".pt2":
        from ..export.aoti import load_pt2

        compiled = load_pt2(model)
        metadata = dict(compiled.get_metadata())
        with torch.no_grad():
            image = compiled()
        image = image[0] if isinstance(image, (list, tuple)) else image
        # A .pt2 runs on the device it was compiled for; --provider applies to ONNX models.
        provider = f"TorchInductor AOT ({image.device.type})"
        image = image.float().cpu()
        fmt = "pt2"
    else:
        from ..export.serve import open_session, run_session

        sess = open_session(model, provider=args.device)
        arr, provider = run_session(sess, model)
        metadata = dict(sess.get_modelmeta().custom_metadata_map)
        image = torch.from_numpy(np.ascontiguousarray(arr))
        fmt = "onnx"
    seconds = time.perf_counter() - t
    save_image(image, out)
    if not args.quiet and args.json != "-":
        print(f"provider: {provider}")
        print(f"wrote {out} ({image.shape[3]}x{image.shape[2]}, {seconds:.2f} s)")
    if args.json is not None:
        report = {
            "model": str(model), "format": fmt, "provider": provider, "output": str(out),
            "channels": int(image.shape[1]), "size": {"height": int(image.shape[2]), "width": int(image.shape[3])},
            "seconds": round(seconds, 4),
            "genotype": metadata.get("isnas_fast.genotype"),
            "reproduces": metadata.get("isnas_fast.reproduces"),
        }
        write_json(report, args.json)
    return 0
