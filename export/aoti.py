"""Compiled TorchInductor (AOT) package of a trained DIP network (docs/design.md §1 step 6).

:func:`to_pt2` exports ``forward() -> image`` with ``torch.export`` — the
trained code z is a buffer of the module, so the compiled program takes *no
input* and its one output is f(z) at the training size — and compiles it
with AOTInductor into a ``.pt2`` package.  BatchNorm keeps DIP's training
semantics (see :mod:`isnas_fast.export.module`).

The package is loaded with ``torch._inductor.aoti_load_package`` in Python
(no isnas_fast code needed: :func:`run_pt2`) or with
``torch::inductor::AOTIModelPackageLoader`` in C++ (``export/cpp/runner.cpp``);
both call it with an empty input list.  The shape is static: a package is
compiled for one size (use the ONNX model for other sizes).

Compiling takes a minute or more on a CPU (it runs a C++ compiler).
"""
from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor

from .. import __version__
from ..bundle import RunSource, as_trained_run, export_report
from ..errors import InputError
from ..io import atomic_path, check_output_path
from ..io.files import json_text
from .module import NoInputModule
from .serve import sniff_model_file

__all__ = ["to_pt2", "run_pt2", "load_pt2"]


def to_pt2(run: RunSource, path: Union[str, os.PathLike], *, device: str = "cpu") -> Path:
    """Compile the trained network of ``run`` into an AOTInductor package at ``path`` (``.pt2``, atomic).

    ``run``: a :class:`~isnas_fast.trained.TrainedRun` (a loaded bundle is
    one), a restore result or a run bundle folder.  ``device``: ``"cpu"`` or ``"cuda"`` — the package runs
    on the device it was compiled for.  Returns ``path``.
    """
    from torch._inductor import aoti_compile_and_package

    out = check_output_path(path, "compiled package", (".pt2",))
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("a CUDA package needs a CUDA device; compile with device='cpu'")
    r = as_trained_run(run)
    module = NoInputModule(r.network, r.z).to(dev)
    metadata = {
        "producer": "isnas-fast",
        "isnas_fast.version": __version__,
        "isnas_fast.genotype": r.genotype,
        "isnas_fast.task": json_text({"name": r.task, "params": r.task_params}, indent=None),
        "isnas_fast.reproduces": export_report(r)["exported_output"],
    }
    with atomic_path(out, "compiled package") as tmp, warnings.catch_warnings():
        # torch's own deprecation notices from inside export/compile (torch.jit, pytree): not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        with torch.no_grad():
            program = torch.export.export(module, ())
        aoti_compile_and_package(program, package_path=str(tmp),
                                 inductor_configs={"aot_inductor.metadata": metadata})
    return out


def load_pt2(path: Union[str, os.PathLike]) -> Any:
    """Load a ``.pt2`` package (``torch._inductor.aoti_load_package``) with clear errors for bad files."""
    from torch._inductor import aoti_load_package

    p = sniff_model_file(path, what="package")
    if not zipfile.is_zipfile(p):
        with open(p, "rb") as fh:
            head = fh.read(8)
        kind = "a PNG image" if head.startswith(b"\x89PNG") else "not a zip archive (truncated or another format)"
        raise InputError(f"{p} is {kind}, not a .pt2 TorchInductor package")
    try:
        return aoti_load_package(str(p))
    except Exception as exc:  # loader failures come as RuntimeError / KeyError / ...
        why = " ".join(str(exc).split())
        raise InputError(f"cannot load TorchInductor package {p}: {why[:300]}") from None


def run_pt2(path: Union[str, os.PathLike]) -> Tensor:
    """Run a package written by :func:`to_pt2`: f(z), (1, C, H, W) float32 on the CPU."""
    model = load_pt2(path)
    with torch.no_grad():
        out = model()
    if isinstance(out, (list, tuple)):
        out = out[0]
    if not isinstance(out, Tensor) or out.ndim != 4 or out.shape[0] != 1:
        raise InputError(f"{path} did not produce one (1, C, H, W) image")
    return out.float().cpu()
