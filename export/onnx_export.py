"""ONNX export of a trained DIP network (docs/design.md §1 step 6).

The graph has no inputs and one output ``image`` (1, C_out, height,
width): the image the run returned.  The trained code ``z`` is a constant
of the model (an initializer, not a graph input), so ONNX Runtime lists no
inputs (``get_inputs()`` and ``get_overridable_initializers()`` are empty)
and runs it with an empty feed: ``session.run(None, {})``.  A run's network
is an :class:`~isnas_fast.dip.averaging.AveragedNetwork` whose members each
add a stored input noise of the code's size, so the model has no use for
another code; to run a network on other codes, load the bundle in PyTorch.

BatchNorm keeps DIP's training semantics (batch statistics of the one image,
see :mod:`isnas_fast.export.module`).

Exporter: the TorchScript-based exporter (``dynamo=False``).  The dynamo
exporter needs ``onnxscript``, which is not a dependency of this package;
the TorchScript one handles every op of the search space (reflection pad,
PixelShuffle -> DepthToSpace, bilinear/bicubic/nearest Resize,
ConvTranspose, grouped Conv) at opsets 11–20, and the tests check parity with
PyTorch on ONNX Runtime.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import torch

from ..versions import __version__
from ..bundle import RunSource, as_trained_run, export_report
from ..errors import InputError
from ..io import atomic_write_bytes, check_output_path
from ..io.files import json_text
from ..trained import TrainedRun
from .module import DeployModule

__all__ = ["to_onnx", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME = "z"
OUTPUT_NAME = "image"
_MIN_OPSET, _MAX_OPSET = 11, 20  # DepthToSpace CRD / cubic Resize need 11; the TorchScript exporter stops at 20


def _metadata(run: TrainedRun) -> dict[str, str]:
    rec = export_report(run)
    return {
        "producer": "isnas-fast",
        "isnas_fast.version": __version__,
        "isnas_fast.genotype": run.genotype,
        "isnas_fast.width": str(run.width),
        "isnas_fast.task": json_text({"name": run.task, "params": run.task_params}, indent=None),
        "isnas_fast.input": f"none (the trained code z, {run.size[1]}x{run.size[0]}, is a constant of the model)",
        "isnas_fast.reproduces": rec["exported_output"],
        "isnas_fast.reproduction": json_text(rec, indent=None),
    }


def to_onnx(run: RunSource, path: Union[str, os.PathLike], *, opset: int = 17) -> Path:
    """Export the trained network of ``run`` to an ONNX file at ``path`` (written atomically).

    ``run``: a :class:`~isnas_fast.trained.TrainedRun` (a loaded bundle is
    one), a restore result or a run bundle folder.  ``opset``: ONNX opset, 11–20.  The model
    has no inputs and reproduces the run's returned image, ``network(z)`` (module
    docstring).  The model is checked with ``onnx.checker`` before it is
    written.  Returns ``path``.
    """
    import onnx
    from onnx import numpy_helper

    if isinstance(opset, bool) or not isinstance(opset, int) or not _MIN_OPSET <= opset <= _MAX_OPSET:
        raise InputError(f"ONNX opset must be an integer in [{_MIN_OPSET}, {_MAX_OPSET}], got {opset!r}")
    out = check_output_path(path, "ONNX model", (".onnx",))
    r = as_trained_run(run)
    module = DeployModule(r.network, r.crop)
    z = r.z.detach().to("cpu", torch.float32).contiguous()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated, and traces shape
        # arithmetic (dip-skip's centre crop) with TracerWarnings: both expected here.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module, (z,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
            )
        except Exception as exc:  # exporter failures have many types; report one line
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"ONNX export of {r.genotype} failed: {why}") from None
    model = onnx.load_from_string(buf.getvalue())
    # The trained code becomes a constant: an initializer, and no longer a graph input
    # (an initializer that is also an input would be an overridable default, which
    # ONNX Runtime warns about and lists under neither inputs nor constants).
    kept = [i for i in model.graph.input if i.name != INPUT_NAME]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.append(numpy_helper.from_array(z.numpy(), INPUT_NAME))
    for key, value in _metadata(r).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = ("isnas-fast DIP network " + r.genotype + ": no inputs; its output is the image the "
                        "run returned (metadata isnas_fast.reproduces)")
    onnx.checker.check_model(model, full_check=True)
    return atomic_write_bytes(out, model.SerializeToString())
